-- wrk script of `vreserve bench api` (bench/api.py): one request per call, on a path drawn at
-- random from BENCH_WRK_PATHS (a file, one path a line), with the bearer token BENCH_WRK_TOKEN.
-- BENCH_WRK_MODE=post sends an order status (a fresh status_id each time, so none is a repeat).
-- done() prints one "WRKJSON {...}" line (requests, duration, latency percentiles in us, errors;
-- wrk's "status" errors are answers outside 2xx/3xx), which bench/api.py parses.
-- BENCH_WRK_DELAY_MS > 0 paces the load: each connection waits that long after an answer before its
-- next request (50 connections x 100 ms offer ~500 requests/s, less the time each answer takes).
local paths = {}
local token = os.getenv("BENCH_WRK_TOKEN")
local mode = os.getenv("BENCH_WRK_MODE") or "get"
for line in io.lines(os.getenv("BENCH_WRK_PATHS")) do paths[#paths + 1] = line end
local count = 0
local threads = 0
local pause = tonumber(os.getenv("BENCH_WRK_DELAY_MS") or "0") or 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(os.time() + 7919 * (id or 0))
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
  if mode == "post" then wrk.headers["Content-Type"] = "application/json" end
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

function delay()
  return pause
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
