-- Explained vs unexplained stock changes (issue 16). Every change between two consecutive readings
-- of a (site, material) is reconciled against what should change it: picks the site answered
-- (order_status_events 'in_transit' with the picked qty), deliveries into the site, and movements
-- the owner declared (below). Only the unexplained remainder raises an alert (vreserve.reconcile).

-- Movements an owner declares (consumption, replenishment), through `vreserve movements declare`
-- or the API. Idempotent on movement_id.
CREATE TABLE stock_movements (
    movement_id  text PRIMARY KEY,
    site_id      text NOT NULL REFERENCES sites (site_id),
    material_id  text NOT NULL REFERENCES materials (material_id),
    kind         text NOT NULL CHECK (kind IN ('consumption', 'replenishment')),
    qty          numeric NOT NULL CHECK (qty > 0),
    unit         text NOT NULL,
    at           timestamptz NOT NULL,          -- when the goods moved (the site's clock, like its readings)
    actor        text NOT NULL,
    source       text NOT NULL,                 -- cli, api, mqtt
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_site_at ON stock_movements (site_id, material_id, at);
CREATE INDEX stock_movements_at ON stock_movements (at);

-- The reconciliation reads picks and deliveries by time.
CREATE INDEX order_status_events_status_at ON order_status_events (status, at);

-- Per (site, material): the newest reading already reconciled (the next check starts after it).
CREATE TABLE reconcile_cursor (
    site_id      text NOT NULL,
    material_id  text NOT NULL,
    ts           timestamptz NOT NULL,
    PRIMARY KEY (site_id, material_id)
);

-- Every change that had something to explain it, or an unexplained remainder: the reading, the
-- expected quantity and what explained the rest. (Changes with neither are not stored.)
CREATE TABLE stock_changes (
    site_id          text NOT NULL,
    material_id      text NOT NULL,
    seq              bigint NOT NULL,
    ts               timestamptz NOT NULL,
    qty              numeric NOT NULL,
    unit             text NOT NULL,
    prev_seq         bigint NOT NULL,
    prev_ts          timestamptz NOT NULL,
    prev_qty         numeric NOT NULL,
    picked_qty       numeric NOT NULL,
    received_qty     numeric NOT NULL,
    declared_qty     numeric NOT NULL,          -- signed: replenishment +, consumption -
    expected_qty     numeric NOT NULL,
    unexplained_qty  numeric NOT NULL,          -- qty - expected
    tolerance_qty    numeric NOT NULL,
    verdict          text NOT NULL CHECK (verdict IN ('explained', 'unexplained_drop', 'unexplained_rise',
                                                      'pick_not_reflected', 'above_capacity')),
    explained_by     jsonb NOT NULL DEFAULT '[]',
    judged_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, material_id, ts)
);
CREATE INDEX stock_changes_unexplained ON stock_changes (site_id, judged_at) WHERE verdict <> 'explained';
