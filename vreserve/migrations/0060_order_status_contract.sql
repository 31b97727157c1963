-- Order-status contract v1, versioning rule: fields a carrier adds that the contract does not know
-- (a `vehicle`, a `driver`) are accepted and kept here as they came; known fields stay strict.
ALTER TABLE order_status_events ADD COLUMN IF NOT EXISTS extra jsonb;
