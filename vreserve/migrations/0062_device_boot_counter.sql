-- MQTT contract v1, optional `boot` (the device's boot counter): readings are ordered by
-- (boot, seq, ts), so a device whose seq restarts at 1 after a reboot and says so with a higher
-- boot is taken in order instead of being ignored as older (live stock stayed stale, silently).
-- 0 for devices that send none (and for every row written before). Plain and hypertable alike.
ALTER TABLE stock_readings ADD COLUMN IF NOT EXISTS boot bigint NOT NULL DEFAULT 0;
ALTER TABLE stock_latest ADD COLUMN IF NOT EXISTS boot bigint NOT NULL DEFAULT 0;
