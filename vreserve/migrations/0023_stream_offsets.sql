-- Stream: how far each readings partition has been written, in the same transaction as the rows.
-- Faust's own committed offsets can pass records it never handed to the agent (faust-streaming
-- #606, #596); this frontier lets the worker see such a skip and read the skipped records itself.
CREATE TABLE IF NOT EXISTS stream_offsets (
    consumer     text NOT NULL,      -- the worker's app id (consumer group)
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,    -- every record below it is in the tables
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
