-- Safety levels (0021) are managed through `vreserve safety` and the API (vreserve.safety): who set
-- a level and when.
ALTER TABLE safety_levels ADD COLUMN set_by text NOT NULL DEFAULT 'migration';
ALTER TABLE safety_levels ADD COLUMN set_at timestamptz NOT NULL DEFAULT now();
