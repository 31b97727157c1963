-- Demand updates rescue centres publish on the demand topic (one row per update, replays ignored).
-- The planner uses, per (region, rescue centre, material, period), the latest by `at`.
CREATE TABLE demand_updates (
    update_id      text PRIMARY KEY,
    region         text NOT NULL,
    rescue_centre  text NOT NULL,
    material_id    text NOT NULL,
    period         integer NOT NULL CHECK (period >= 1),
    qty            numeric NOT NULL CHECK (qty >= 0),
    at             timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX demand_updates_region ON demand_updates (region, rescue_centre, material_id, period, at);
