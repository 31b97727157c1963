-- The status records each settlement version was computed from, so the next version can name
-- exactly the records that were not in the earlier ones (late arrivals), whatever their clocks say.
ALTER TABLE settlement_statements ADD COLUMN basis_status_ids text[] NOT NULL DEFAULT '{}';
