-- The dispatcher reads the mode and order-status topics by explicit partition assignment and keeps
-- its position here, next to the effects it applied: no consumer-group rebalance can stall a
-- restarted dispatcher, and a replay from an older position is harmless (inputs are idempotent).
CREATE TABLE dispatcher_offsets (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
