-- The cross-stage contract: registry (sites, materials, contracted quantities), emergencies and
-- their mode events, dispatch orders and their status history. Stage-specific tables come in later
-- migrations (0010-0019 ingest, 0020-0029 stream, 0030-0039 dispatcher, 0040-0049 supervision).

CREATE TABLE materials (
    material_id  text PRIMARY KEY,
    name         text NOT NULL,
    unit         text NOT NULL,                     -- the unit every quantity of it is counted in
    class        text NOT NULL CHECK (class IN ('medical', 'protective', 'living')),
    consumable   boolean NOT NULL                   -- false = durable
);

CREATE TABLE sites (
    site_id         text PRIMARY KEY,
    name            text NOT NULL,
    owner_id        text NOT NULL,                  -- the party paid in settlement
    owner_kind      text NOT NULL CHECK (owner_kind IN ('government', 'enterprise', 'ecommerce', 'ngo', 'household')),
    tier            text NOT NULL CHECK (tier IN ('centralized', 'decentralized')),
    parent_site_id  text REFERENCES sites (site_id),
    region          text NOT NULL,                  -- the administrative area an emergency is declared for
    grid_cell       text NOT NULL,                  -- grid-management cell within the region
    lat             double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon             double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- Supervision's confidence in the site's numbers, 0..1; the planner counts on trust x stock.
    trust           double precision NOT NULL DEFAULT 1.0 CHECK (trust BETWEEN 0 AND 1),
    CHECK ((tier = 'decentralized') = (parent_site_id IS NOT NULL))
);
CREATE INDEX sites_region_cell ON sites (region, grid_cell);
CREATE INDEX sites_parent ON sites (parent_site_id);

-- Per site and material, what the owner commits to the reserve (the registry's view; priced
-- contracts with fees and validity live in the supervision migrations).
CREATE TABLE site_materials (
    site_id         text NOT NULL REFERENCES sites (site_id),
    material_id     text NOT NULL REFERENCES materials (material_id),
    contracted_qty  numeric NOT NULL CHECK (contracted_qty >= 0),
    PRIMARY KEY (site_id, material_id)
);

-- The priced, dated commitment behind a site's reserve stock. A (site, material) without a contract
-- valid at planning time is never planned from. Money is integer, in the smallest currency unit.
CREATE TABLE contracts (
    contract_id                  text PRIMARY KEY,
    site_id                      text NOT NULL REFERENCES sites (site_id),
    material_id                  text NOT NULL REFERENCES materials (material_id),
    committed_qty                numeric NOT NULL CHECK (committed_qty >= 0),
    valid_from                   date NOT NULL,
    valid_to                     date NOT NULL,
    standby_fee_minor_per_unit_day numeric NOT NULL DEFAULT 0 CHECK (standby_fee_minor_per_unit_day >= 0),
    call_off_price_minor_per_unit  bigint NOT NULL DEFAULT 0 CHECK (call_off_price_minor_per_unit >= 0),
    min_response_minutes         integer NOT NULL DEFAULT 0 CHECK (min_response_minutes >= 0),
    penalty_minor_per_unit       bigint NOT NULL DEFAULT 0 CHECK (penalty_minor_per_unit >= 0),
    CHECK (valid_to >= valid_from)
);
CREATE INDEX contracts_site_material ON contracts (site_id, material_id, valid_from, valid_to);

-- The live virtual warehouse: each (site, material)'s latest accepted reading. Written by the
-- stream worker (only ever forward: a reading older by (seq, ts) never overwrites a newer one).
CREATE TABLE stock_latest (
    site_id      text NOT NULL,
    material_id  text NOT NULL,
    qty          numeric NOT NULL CHECK (qty >= 0),
    unit         text NOT NULL,
    ts           timestamptz NOT NULL,
    seq          bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, material_id)
);

-- Alerts from every stage (stream: stale, low stock, jump; supervision: audit discrepancy).
CREATE TABLE alerts (
    alert_id     text PRIMARY KEY,                  -- deterministic: replays do not duplicate
    kind         text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    site_id      text,
    grid_cell    text,
    material_id  text,
    message      text NOT NULL,
    at           timestamptz NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}',
    resolved_at  timestamptz
);
CREATE INDEX alerts_open ON alerts (kind, at) WHERE resolved_at IS NULL;

-- One row per declared emergency in a region; ended_at is set by the matching 'end' event.
CREATE TABLE emergencies (
    emergency_id    text PRIMARY KEY,
    region          text NOT NULL,
    grid_cells      text[] NOT NULL DEFAULT '{}',   -- empty = the whole region
    declared_at     timestamptz NOT NULL,
    declared_by     text NOT NULL,
    reason          text NOT NULL,
    periods         integer NOT NULL CHECK (periods > 0),
    period_length_s double precision NOT NULL CHECK (period_length_s > 0),
    demand_source   text NOT NULL,                  -- file path, scenario name or 'topic'
    ended_at        timestamptz,
    ended_by        text,
    end_reason      text
);
-- At most one open emergency per region.
CREATE UNIQUE INDEX emergencies_one_open_per_region ON emergencies (region) WHERE ended_at IS NULL;

-- Every mode event as received (accepted or not), for the record: who, when, why, scope.
CREATE TABLE mode_events (
    event_id      text PRIMARY KEY,
    region        text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('declare', 'end')),
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    reason        text NOT NULL,
    payload       jsonb NOT NULL,
    accepted      boolean NOT NULL,
    error         text,
    emergency_id  text REFERENCES emergencies (emergency_id)
);

-- One row per plan (region, period, re-plan); figures from the optimizer.
CREATE TABLE plans (
    plan_id        text PRIMARY KEY,
    emergency_id   text NOT NULL REFERENCES emergencies (emergency_id),
    period         integer NOT NULL CHECK (period >= 1),
    created_at     timestamptz NOT NULL,
    status         text NOT NULL,                  -- optimal, feasible, infeasible, no_solution
    objective      double precision,
    bound          double precision,
    gap            double precision,
    solve_seconds  double precision,
    summary        jsonb NOT NULL DEFAULT '{}'
);

-- A dispatch order: one leg of one material in one period of one plan. Ids are deterministic
-- (derived from plan, period, arc and material), so republishing never creates a second order.
CREATE TABLE dispatch_orders (
    order_id          text PRIMARY KEY,
    plan_id           text NOT NULL REFERENCES plans (plan_id),
    emergency_id      text NOT NULL REFERENCES emergencies (emergency_id),
    period            integer NOT NULL CHECK (period >= 1),
    leg               text NOT NULL CHECK (leg IN ('supply', 'delivery')),  -- site->centre, centre->rescue centre
    origin            text NOT NULL,                -- site id (supply leg) or distribution centre id
    destination       text NOT NULL,                -- distribution centre id or rescue centre id
    material_id       text NOT NULL,
    qty               numeric NOT NULL CHECK (qty > 0),
    unit              text NOT NULL,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'accepted', 'in_transit', 'delivered', 'failed', 'cancelled', 'closed')),
    delivered_qty     numeric NOT NULL DEFAULT 0 CHECK (delivered_qty >= 0),
    created_at        timestamptz NOT NULL,
    status_at         timestamptz NOT NULL,
    superseded_by     text REFERENCES plans (plan_id)
);
CREATE INDEX dispatch_orders_emergency ON dispatch_orders (emergency_id, period);
CREATE INDEX dispatch_orders_origin_open ON dispatch_orders (origin, material_id)
    WHERE status IN ('open', 'accepted', 'in_transit');

-- Status records from logistics, each kept once (replays de-duplicate on status_id).
CREATE TABLE order_status_events (
    status_id      text PRIMARY KEY,
    order_id       text NOT NULL REFERENCES dispatch_orders (order_id),
    status         text NOT NULL CHECK (status IN ('accepted', 'in_transit', 'delivered', 'failed', 'cancelled', 'closed')),
    at             timestamptz NOT NULL,
    qty            numeric,                         -- delivered quantity on 'delivered'
    reason         text,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_status_events_order ON order_status_events (order_id, at);
