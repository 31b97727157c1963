-- Stream: the raw readings history (TimescaleDB variant). One row per (site, material, ts), written
-- idempotently by the stream worker's sink (INSERT ... ON CONFLICT DO NOTHING), so a replay or a
-- restart never adds a second row. grid_cell is copied from the registry at write time so the
-- hourly rollup needs no join (continuous aggregates are simplest on one hypertable).
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE stock_readings (
    site_id      text NOT NULL,
    material_id  text NOT NULL,
    ts           timestamptz NOT NULL,              -- the sensor's timestamp
    seq          bigint NOT NULL,
    qty          numeric NOT NULL CHECK (qty >= 0),
    unit         text NOT NULL,
    grid_cell    text,                              -- NULL: site not (yet) in the registry
    received_at  timestamptz NOT NULL,              -- when the bridge accepted it
    stored_at    timestamptz NOT NULL DEFAULT now(),-- when it became queryable (latency figures)
    PRIMARY KEY (site_id, material_id, ts)
);
SELECT create_hypertable('stock_readings', by_range('ts', INTERVAL '1 day'));
CREATE INDEX stock_readings_cell_time ON stock_readings (grid_cell, material_id, ts DESC);

ALTER TABLE stock_readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'site_id, material_id',
    timescaledb.compress_orderby = 'ts DESC'
);
SELECT add_compression_policy('stock_readings', INTERVAL '7 days');
SELECT add_retention_policy('stock_readings', INTERVAL '400 days');

-- Hourly stock per (site, material): the last reading in each hour, with its range. Kept by
-- TimescaleDB's refresh policy; stock_hourly_cell (0021) sums it per grid cell.
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
       last(unit, ts) AS unit         -- (added with 0024; see there)
FROM stock_readings
GROUP BY bucket, site_id, material_id, grid_cell
WITH NO DATA;
-- Its refresh policy is added by 0024.

-- The worker calls this after writing; TimescaleDB refreshes readings_hourly itself (policy above),
-- so here it does nothing. The plain variant recomputes the buckets instead: same call on both.
CREATE FUNCTION stream_refresh_hourly(lo timestamptz, hi timestamptz) RETURNS integer
LANGUAGE sql AS $$ SELECT 0 $$;

-- Retention on demand (the plain variant deletes; here the policy drops chunks).
CREATE FUNCTION stream_apply_retention(keep interval) RETURNS bigint
LANGUAGE sql AS $$ SELECT 0::bigint $$;
