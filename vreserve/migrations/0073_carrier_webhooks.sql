-- Carriers without Kafka (issue 14): a webhook per carrier, and one delivery row per (carrier,
-- dispatch record) in topic order. A record fails, is retried with backoff, and after N failures
-- the carrier's queue is held with the reason (nothing is dropped) until an operator releases it.
CREATE TABLE carrier_webhooks (
    carrier_id   text PRIMARY KEY REFERENCES carriers (carrier_id),
    url          text NOT NULL CHECK (url ~ '^https?://'),
    secret       text NOT NULL,                       -- HMAC-SHA256 key shared with the carrier
    held_at      timestamptz,                         -- set: deliveries paused until released
    held_reason  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL
);

CREATE TABLE webhook_deliveries (
    seq              bigserial PRIMARY KEY,             -- topic order (per carrier) = delivery order
    carrier_id       text NOT NULL REFERENCES carriers (carrier_id),
    delivery_key     text NOT NULL,                     -- '<event>:<order_id>' (the idempotency key)
    event            text NOT NULL CHECK (event IN ('order', 'supersede', 'cancel')),
    order_id         text NOT NULL,
    payload          text NOT NULL,                     -- the topic record, as published
    source           text NOT NULL,                     -- '<topic>:<partition>:<offset>'
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'held')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (carrier_id, delivery_key)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (carrier_id, seq) WHERE status <> 'delivered';
