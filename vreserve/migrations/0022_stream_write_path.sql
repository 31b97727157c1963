-- Stream: lighter write path, measured with `vreserve bench stream`.
-- Every reading costs one history row and one stock_latest update; each index on the history is
-- another B-tree insert per reading. Per-cell history queries go through readings_hourly (its own
-- index), so the per-cell index on the raw history is not worth its write cost.
DROP INDEX IF EXISTS stock_readings_cell_time;
-- stock_latest rows are updated in place all day: leave room on each page so the update can stay
-- on the same page (HOT) and skip the primary-key index.
ALTER TABLE stock_latest SET (fillfactor = 80);
