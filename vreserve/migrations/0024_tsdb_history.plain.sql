-- Plain PostgreSQL twin of 0024 (TimescaleDB): readings_hourly gains each hour's last unit, so
-- `stock --at` answers the same from the rollup on both variants.
ALTER TABLE readings_hourly ADD COLUMN IF NOT EXISTS unit text;
-- stock --at reads the hourly rows of a time window; one site's history reads its own rows.
CREATE INDEX IF NOT EXISTS readings_hourly_site ON readings_hourly (site_id, bucket);

CREATE OR REPLACE FUNCTION stream_refresh_hourly(lo timestamptz, hi timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    b_lo timestamptz := date_trunc('hour', lo);
    b_hi timestamptz := date_trunc('hour', hi) + INTERVAL '1 hour';
    n integer;
BEGIN
    DELETE FROM readings_hourly WHERE bucket >= b_lo AND bucket < b_hi;
    INSERT INTO readings_hourly (bucket, site_id, material_id, grid_cell, qty_last, qty_min, qty_max,
                                 n_readings, last_ts, unit)
    SELECT date_trunc('hour', ts) AS bucket, site_id, material_id,
           (array_agg(grid_cell ORDER BY ts DESC))[1],
           (array_agg(qty ORDER BY ts DESC))[1],
           min(qty), max(qty), count(*), max(ts),
           (array_agg(unit ORDER BY ts DESC))[1]
    FROM stock_readings
    WHERE ts >= b_lo AND ts < b_hi
    GROUP BY 1, site_id, material_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Rows rolled up before this migration get their unit.
SELECT stream_refresh_hourly(min(ts), max(ts)) FROM stock_readings HAVING count(*) > 0;
