-- TimescaleDB: the readings history as the queries need it (issue 13). The plain twin keeps the same
-- columns and the same answers.
--
-- Chunk interval: one day. At the benchmark's fleet (10,000 sites x 10 materials, a reading every 10
-- minutes) a day is 14.4 M rows, about 1.5 GB with its primary key: the chunk being written and its
-- index stay in memory (TimescaleDB's rule of thumb: the active chunk within a quarter of RAM), a
-- 30-day history is 30 chunks (cheap to plan and to exclude), and compression gets 144 readings per
-- (site, material) per chunk to compress together (fewer would mean more per-batch overhead and a
-- lower ratio). Retention and compression then act on whole days. A fleet reporting every 10 s
-- would want about an hour (see docs/stream.md).
SELECT set_chunk_time_interval('stock_readings', INTERVAL '1 day');

-- Compression: one segment per (site, material), readings in time order inside it; chunks older than
-- 7 days (stock --at and the 30-day history read them compressed). Set again here so the settings
-- are stated in one place: same as 0020.
ALTER TABLE stock_readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, material_id',
    timescaledb.compress_orderby = 'ts DESC'
);

-- readings_hourly again, now with each hour's last unit (stock --at sums only readings in the
-- material's unit, like the live warehouse). A continuous aggregate cannot gain a column, so it is
-- recreated; on a database that already had history, run once (outside a transaction):
--   CALL refresh_continuous_aggregate('readings_hourly', NULL, NULL);
DROP VIEW IF EXISTS stock_hourly_cell;
DROP MATERIALIZED VIEW IF EXISTS readings_hourly;

CREATE MATERIALIZED VIEW readings_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       site_id,
       material_id,
       grid_cell,
       last(qty, ts)  AS qty_last,
       min(qty)       AS qty_min,
       max(qty)       AS qty_max,
       count(*)       AS n_readings,
       max(ts)        AS last_ts,
       last(unit, ts) AS unit
FROM stock_readings
GROUP BY bucket, site_id, material_id, grid_cell
WITH NO DATA;

-- Refreshed every 5 minutes over the last 31 days: the bridge accepts readings up to 30 days old,
-- so every late reading is folded in, and a refresh recomputes only the buckets that received rows
-- since the last one (TimescaleDB's invalidation log), so the wide window costs nothing when nothing
-- arrived late. The last hour is not materialized: real-time aggregation (materialized_only = false)
-- answers it from the raw rows, so queries see readings the moment they are written.
SELECT add_continuous_aggregate_policy('readings_hourly',
    start_offset => INTERVAL '31 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');

CREATE VIEW stock_hourly_cell AS
SELECT bucket, grid_cell, material_id,
       sum(qty_last)            AS qty,
       count(DISTINCT site_id)  AS sites_reporting
FROM readings_hourly
GROUP BY bucket, grid_cell, material_id;
