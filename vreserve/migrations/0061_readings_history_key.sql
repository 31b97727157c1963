-- The readings history must not lose a reading: two reports of one site and material within the
-- same timestamp (a sensor with one-second resolution reporting twice, or a device whose seq
-- restarted after a reboot) are two rows, told apart by seq. The key was (site, material, ts),
-- so the second one was dropped by ON CONFLICT DO NOTHING while stock_latest took the higher seq:
-- `stock --at` and live stock disagreed. Replays still collapse: same (site, material, ts, seq).
-- Same statements on plain PostgreSQL and on a TimescaleDB hypertable (the key keeps the time
-- column, as a hypertable's unique keys must).
ALTER TABLE stock_readings DROP CONSTRAINT IF EXISTS stock_readings_pkey;
ALTER TABLE stock_readings ADD CONSTRAINT stock_readings_pkey PRIMARY KEY (site_id, material_id, ts, seq);
