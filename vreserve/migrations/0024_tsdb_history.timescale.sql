-- TimescaleDB: the readings history as the queries need it (issue 13). The plain twin keeps the same
-- columns and the same answers.
--
-- Chunk interval: one day. At the benchmark's fleet (one reading per 10 minutes per site and
-- material) a day of 1,000 sites x 10 materials is 1.44 M rows, about 0.15 GB with its primary key
-- (10,000 sites: 14.4 M rows, ~1.5 GB): the chunk being written and its index stay in memory
-- (TimescaleDB's rule of thumb: the active chunk within a quarter of RAM); a 30-day history is 30
-- chunks, cheap to plan and to exclude; compression gets 144 readings per (site, material) per chunk
-- to compress together (fewer means more per-batch overhead and a lower ratio); retention and
-- compression act on whole days. A fleet reporting every 10 s would want about an hour (docs/stream.md).
SELECT set_chunk_time_interval('stock_readings', INTERVAL '1 day');

-- Every index on the history is paid for by every reading the worker writes (0022 dropped the
-- per-cell one). create_hypertable's default B-tree on ts becomes a BRIN index, as on plain
-- PostgreSQL: readings arrive in time order, so a block-range index finds the hour `stock --at`
-- reads in the chunk being written at a fraction of the insert cost; older chunks are found by
-- chunk exclusion and, once compressed, by their batches' min/max ts.
DROP INDEX IF EXISTS stock_readings_ts_idx;
CREATE INDEX IF NOT EXISTS stock_readings_ts_brin ON stock_readings USING brin (ts);

-- readings_hourly carries each hour's last unit (stock --at sums only readings in the material's
-- unit, like the live warehouse). 0020 creates it so since this migration; a database migrated
-- before gets it recreated here (a continuous aggregate cannot gain a column). Such a database then
-- needs one refresh of its older history, outside a transaction:
--   CALL refresh_continuous_aggregate('readings_hourly', NULL, NULL);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_name = 'readings_hourly' AND column_name = 'unit') THEN
        PERFORM remove_continuous_aggregate_policy('readings_hourly', if_exists => true);
        DROP VIEW IF EXISTS stock_hourly_cell;
        DROP MATERIALIZED VIEW readings_hourly;
        EXECUTE $v$
            CREATE MATERIALIZED VIEW readings_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, site_id, material_id, grid_cell,
                   last(qty, ts) AS qty_last, min(qty) AS qty_min, max(qty) AS qty_max,
                   count(*) AS n_readings, max(ts) AS last_ts, last(unit, ts) AS unit
            FROM stock_readings
            GROUP BY bucket, site_id, material_id, grid_cell
            WITH NO DATA $v$;
        CREATE VIEW stock_hourly_cell AS
        SELECT bucket, grid_cell, material_id, sum(qty_last) AS qty, count(DISTINCT site_id) AS sites_reporting
        FROM readings_hourly
        GROUP BY bucket, grid_cell, material_id;
    END IF;
END $$;

-- Refreshed every 5 minutes over the last 31 days: the bridge accepts readings up to 30 days old,
-- so every late reading is folded in, and a refresh recomputes only the buckets that received rows
-- since the last one (TimescaleDB's invalidation log), so the wide window costs nothing when nothing
-- arrived late. The last hour is not materialized: real-time aggregation (materialized_only = false)
-- answers it from the raw rows, so queries see readings the moment they are written; older hours
-- that receive late readings show them after the next refresh (at most 5 minutes).
SELECT remove_continuous_aggregate_policy('readings_hourly', if_exists => true);
SELECT add_continuous_aggregate_policy('readings_hourly',
    start_offset => INTERVAL '31 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
