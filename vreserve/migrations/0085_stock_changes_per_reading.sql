-- A site may report twice within one millisecond (a regular reading, then the one right after a
-- pick): each change is keyed by its closing reading (ts, seq), as stock_readings is, so two
-- changes closing on the same millisecond are both kept.
ALTER TABLE stock_changes DROP CONSTRAINT stock_changes_pkey;
ALTER TABLE stock_changes ADD PRIMARY KEY (site_id, material_id, ts, seq);

-- The reconciliation cursor is a reading's (ts, seq), so a change closing on the same millisecond
-- as the cursor's reading is still ahead of it. Existing cursors mean "everything at ts judged".
ALTER TABLE reconcile_cursor ADD COLUMN seq bigint NOT NULL DEFAULT 9223372036854775807;
ALTER TABLE reconcile_cursor ALTER COLUMN seq DROP DEFAULT;
