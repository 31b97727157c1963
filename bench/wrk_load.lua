-- wrk script of `vreserve bench api` (bench/api.py): one request per call, on a path drawn at
-- random from BENCH_WRK_PATHS (a file, one path a line), with the bearer token BENCH_WRK_TOKEN.
-- BENCH_WRK_MODE=post sends an order status (a fresh status_id each time, so none is a repeat).
-- done() prints one "WRKJSON {...}" line (requests, duration, latency percentiles in us, errors;
-- wrk's "status" errors are answers outside 2xx/3xx), which bench/api.py parses.
-- BENCH_WRK_DELAY_MS > 0 paces the load: each connection waits that long on average after an answer
-- before its next request (50 connections x 100 ms offer ~500 requests/s, less the time each answer
-- takes).
local paths = {}
local token = os.getenv("BENCH_WRK_TOKEN")
local mode = os.getenv("BENCH_WRK_MODE") or "get"
for line in io.lines(os.getenv("BENCH_WRK_PATHS")) do paths[#paths + 1] = line end
local count = 0
local threads = 0
local all_threads = {}
local pause = tonumber(os.getenv("BENCH_WRK_DELAY_MS") or "0") or 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
  all_threads[#all_threads + 1] = thread
end

-- BENCH_WRK_TIMING=1: read every answer's server-timing header (api/timing.py) into a histogram
-- per stage, 0.1 ms buckets ("stage:bucket" -> count); done() prints one "WRKTIMING {...}" line with each stage's count,
-- mean, p50, p99 and max in ms. Off by default: wrk then skips handing answers to Lua.
hist = {}
if os.getenv("BENCH_WRK_TIMING") == "1" then
  function response(status, headers, body)
    local st = headers["server-timing"] or headers["Server-Timing"]
    if not st then return end
    for name, dur in string.gmatch(st, "([%w_]+);dur=([%d%.]+)") do
      local key = name .. ":" .. math.floor(tonumber(dur) * 10)   -- flat string keys: wrk's
      hist[key] = (hist[key] or 0) + 1                             -- thread:get copies no nested table
    end
  end
end

local function merged()
  local all = {}
  for _, t in ipairs(all_threads) do
    for key, n in pairs(t:get("hist") or {}) do
      local name, b = string.match(key, "^(.-):(%d+)$")
      b = tonumber(b)
      local m = all[name] or {}
      all[name] = m
      m[b] = (m[b] or 0) + n
    end
  end
  return all
end

local function pct(keys, h, total, p)
  local want, seen = math.ceil(total * p), 0
  for _, b in ipairs(keys) do
    seen = seen + h[b]
    if seen >= want then return b / 10 end
  end
  return 0
end

local function timing_line()
  local out = {}
  for name, h in pairs(merged()) do
    local keys, total, sum = {}, 0, 0
    for b, n in pairs(h) do keys[#keys + 1] = b; total = total + n; sum = sum + n * b / 10 end
    table.sort(keys)
    out[#out + 1] = string.format('"%s":{"n":%d,"mean":%.2f,"p50":%.1f,"p99":%.1f,"max":%.1f}', name, total,
      sum / total, pct(keys, h, total, 0.5), pct(keys, h, total, 0.99), keys[#keys] / 10)
  end
  return "WRKTIMING {" .. table.concat(out, ",") .. "}\n"
end

function init(args)
  math.randomseed(os.time() + 7919 * (id or 0))
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
  if mode == "post" then wrk.headers["Content-Type"] = "application/json" end
  if os.getenv("BENCH_WRK_TIMING") == "1" then wrk.headers["X-Server-Timing"] = "1" end
end

function request()
  local path = paths[math.random(#paths)]
  if mode == "post" then
    count = count + 1
    local body = string.format('{"status":"accepted","status_id":"S-wrk-%d-%d-%d"}', id or 0, count,
                               math.random(1, 1000000000))
    return wrk.format("POST", path, nil, body)
  end
  return wrk.format("GET", path)
end

-- Think time drawn from an exponential distribution of mean BENCH_WRK_DELAY_MS: with a fixed
-- pause the 50 connections stay in step (they start together and wait alike), so the "paced"
-- load arrived as bursts of 50 requests every cycle and measured the bursts' queue, not the rate.
function delay()
  if pause <= 0 then return 0 end
  return math.floor(-pause * math.log(1 - math.random()) + 0.5)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
  if os.getenv("BENCH_WRK_TIMING") == "1" then io.write(timing_line()) end
end
