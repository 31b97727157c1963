-- Stream: safety levels, the aggregates the worker keeps up to date, and the alert outbox.

-- Safety stock per grid cell and material (in the material's unit): below it, a low_stock alert.
CREATE TABLE safety_levels (
    grid_cell    text NOT NULL,
    material_id  text NOT NULL REFERENCES materials (material_id),
    safety_qty   numeric NOT NULL CHECK (safety_qty >= 0),
    PRIMARY KEY (grid_cell, material_id)
);

-- Reported vs contracted quantity and reporting/stale site counts, per (grid cell, material),
-- (owner kind, material) and per material overall (dim_key '*'). Recomputed from stock_latest and
-- the registry by the worker every few seconds (an exact recomputation, so replays never skew it).
CREATE TABLE stock_aggregates (
    dimension        text NOT NULL CHECK (dimension IN ('grid_cell', 'owner_kind', 'material')),
    dim_key          text NOT NULL,
    material_id      text NOT NULL,
    unit             text NOT NULL,
    reported_qty     numeric NOT NULL,
    contracted_qty   numeric NOT NULL,
    sites_contracted integer NOT NULL,
    sites_reporting  integer NOT NULL,
    sites_stale      integer NOT NULL,
    refreshed_at     timestamptz NOT NULL,
    PRIMARY KEY (dimension, dim_key, material_id)
);

-- Alerts are written to the database first (with the readings that caused them, or by the
-- worker's checks) and then published to the alerts topic by the worker's outbox loop, which
-- sets published_at; an alert resolved later is published again with its resolved_at.
ALTER TABLE alerts ADD COLUMN published_at timestamptz;
CREATE INDEX alerts_unpublished ON alerts (at) WHERE published_at IS NULL;
CREATE INDEX alerts_open_scope ON alerts (kind, grid_cell, material_id, site_id) WHERE resolved_at IS NULL;

-- Hourly stock per grid cell and material: the sum over sites of each site's last reading in the
-- hour (sites that did not report in an hour are absent from it). Same on both variants.
CREATE VIEW stock_hourly_cell AS
SELECT bucket, grid_cell, material_id,
       sum(qty_last)            AS qty,
       count(DISTINCT site_id)  AS sites_reporting
FROM readings_hourly
GROUP BY bucket, grid_cell, material_id;
