-- Stream: the raw readings history (plain PostgreSQL variant; see the .timescale.sql twin).
-- A BRIN index on time stands in for hypertable chunks; readings_hourly is an ordinary table the
-- worker refreshes with stream_refresh_hourly(); retention is stream_apply_retention().
CREATE TABLE stock_readings (
    site_id      text NOT NULL,
    material_id  text NOT NULL,
    ts           timestamptz NOT NULL,
    seq          bigint NOT NULL,
    qty          numeric NOT NULL CHECK (qty >= 0),
    unit         text NOT NULL,
    grid_cell    text,
    received_at  timestamptz NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, material_id, ts)
);
CREATE INDEX stock_readings_ts_brin ON stock_readings USING brin (ts);
CREATE INDEX stock_readings_cell_time ON stock_readings (grid_cell, material_id, ts DESC);

CREATE TABLE readings_hourly (
    bucket       timestamptz NOT NULL,
    site_id      text NOT NULL,
    material_id  text NOT NULL,
    grid_cell    text,
    qty_last     numeric NOT NULL,
    qty_min      numeric NOT NULL,
    qty_max      numeric NOT NULL,
    n_readings   bigint NOT NULL,
    last_ts      timestamptz NOT NULL,
    PRIMARY KEY (bucket, site_id, material_id)
);
CREATE INDEX readings_hourly_cell ON readings_hourly (grid_cell, material_id, bucket);

-- Recompute the hourly buckets overlapping [lo, hi) from the history: idempotent, so calling it
-- after every flush or after a replay gives the same table as one computation over everything.
CREATE FUNCTION stream_refresh_hourly(lo timestamptz, hi timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    b_lo timestamptz := date_trunc('hour', lo);
    b_hi timestamptz := date_trunc('hour', hi) + INTERVAL '1 hour';
    n integer;
BEGIN
    DELETE FROM readings_hourly WHERE bucket >= b_lo AND bucket < b_hi;
    INSERT INTO readings_hourly
    SELECT date_trunc('hour', ts) AS bucket, site_id, material_id,
           (array_agg(grid_cell ORDER BY ts DESC))[1],
           (array_agg(qty ORDER BY ts DESC))[1],
           min(qty), max(qty), count(*), max(ts)
    FROM stock_readings
    WHERE ts >= b_lo AND ts < b_hi
    GROUP BY 1, site_id, material_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION stream_apply_retention(keep interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    DELETE FROM stock_readings WHERE ts < now() - keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    DELETE FROM readings_hourly WHERE bucket < date_trunc('hour', now() - keep);
    RETURN n;
END $$;
