-- Critical alerts to registered webhooks (issue 16): signed (HMAC-SHA256), retried with backoff,
-- each (alert, webhook, event) delivered at most once successfully. `vreserve alerts notify` sends.
CREATE TABLE alert_webhooks (
    webhook_id    text PRIMARY KEY,
    url           text NOT NULL CHECK (url ~ '^https?://'),
    secret        bytea NOT NULL,                 -- HMAC key; never printed
    min_severity  text NOT NULL DEFAULT 'critical' CHECK (min_severity IN ('info', 'warning', 'critical')),
    active        boolean NOT NULL DEFAULT true,
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alert_deliveries (
    alert_id        text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    webhook_id      text NOT NULL REFERENCES alert_webhooks (webhook_id) ON DELETE CASCADE,
    event           text NOT NULL CHECK (event IN ('opened', 'resolved')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text,
    PRIMARY KEY (alert_id, webhook_id, event)
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE delivered_at IS NULL;
