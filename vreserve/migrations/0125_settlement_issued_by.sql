-- Who issued each settlement version: the authenticated actor (an API user, or the CLI's OS user).
-- Versions issued before this column existed keep NULL (their run is in the audit trail).
ALTER TABLE settlement_statements ADD COLUMN IF NOT EXISTS issued_by text;
