-- Audit plans as records (issue 14): every risk-weighted draw of sites to inspect is kept with who
-- drew it, the seed and the weights, so a plan can be reproduced and checked, and re-drawing until
-- a favoured site drops out is visible. Append-only by convention (nothing updates a plan).
CREATE TABLE audit_plans (
    plan_id          text PRIMARY KEY,
    drawn_at         timestamptz NOT NULL DEFAULT now(),
    drawn_by         text NOT NULL,                      -- the authenticated actor
    seed             bigint NOT NULL,
    count            integer NOT NULL CHECK (count > 0),
    grid_cell        text,                               -- NULL: every site
    sites_considered integer NOT NULL,
    total_weight     double precision NOT NULL
);
CREATE INDEX audit_plans_drawn_at ON audit_plans (drawn_at DESC);

CREATE TABLE audit_plan_sites (
    plan_id    text NOT NULL REFERENCES audit_plans (plan_id),
    rank       integer NOT NULL,                         -- order of the draw, 1 first
    site_id    text NOT NULL,
    grid_cell  text NOT NULL,
    weight     double precision NOT NULL,
    reasons    text[] NOT NULL,
    PRIMARY KEY (plan_id, rank)
);
