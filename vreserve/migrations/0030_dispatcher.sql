-- Dispatcher bookkeeping on top of the 0001 contract: what was published, cancel records, picks.

-- A plan is persisted (with its orders and cancel records) BEFORE anything is published; a
-- restarted dispatcher republishes every plan whose published_at is still NULL, with the same ids.
ALTER TABLE plans ADD COLUMN published_at timestamptz;
ALTER TABLE plans ADD COLUMN region text;
CREATE UNIQUE INDEX plans_one_per_period ON plans (emergency_id, period);

-- When logistics reported the goods picked at the origin (in_transit): until the site's next
-- reading is newer than this, the picked quantity still counts as reserved at that site.
ALTER TABLE dispatch_orders ADD COLUMN picked_at timestamptz;
ALTER TABLE dispatch_orders ADD COLUMN region text;
CREATE INDEX dispatch_orders_status ON dispatch_orders (status, emergency_id);

-- Explicit cancel records: an order superseded by a newer plan, or closed when the emergency ended.
CREATE TABLE order_cancellations (
    order_id       text PRIMARY KEY REFERENCES dispatch_orders (order_id),
    emergency_id   text NOT NULL REFERENCES emergencies (emergency_id),
    destination    text NOT NULL,
    reason         text NOT NULL,
    superseded_by  text REFERENCES plans (plan_id),
    at             timestamptz NOT NULL,
    published_at   timestamptz
);
CREATE INDEX order_cancellations_unpublished ON order_cancellations (at) WHERE published_at IS NULL;

-- The declare event's demand scaling, and when the end event's close-out (orders closed, cancel
-- records published) was completed.
ALTER TABLE emergencies ADD COLUMN demand_scale double precision NOT NULL DEFAULT 1.0;
ALTER TABLE emergencies ADD COLUMN closed_out_at timestamptz;

-- Malformed mode events (no readable region or kind) are recorded too, as kind 'malformed'.
ALTER TABLE mode_events DROP CONSTRAINT mode_events_kind_check;
ALTER TABLE mode_events ADD CONSTRAINT mode_events_kind_check CHECK (kind IN ('declare', 'end', 'malformed'));
