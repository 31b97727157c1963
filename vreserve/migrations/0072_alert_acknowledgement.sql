-- A person's acknowledgement / resolution of an alert through the API or the CLI (issue 14).
-- Minimal: the alert lifecycle of issue 16 may extend it.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS acknowledged_by text;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_by text;
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS ack_note text;
