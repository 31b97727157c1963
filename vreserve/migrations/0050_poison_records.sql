-- One bad record never stops a service (issue 10). Two tables shared by the consumers that own a
-- database connection:
--
-- rejected_records: a record a consumer could not use (malformed, wrong shape, unknown order...)
--   and has no topic or table of its own for (the dispatcher's order-status and demand inputs).
--   Kept once per topic position, with the ORIGINAL bytes (bytea: NUL or invalid UTF-8 are data).
-- quarantined_records: the last line of defence. A record whose handling raised an unexpected
--   error (a bug, not bad input and not an outage) is counted here per topic position; after
--   `attempts` reaches the consumer's limit it is quarantined (skipped, its offset moves on), so a
--   restart does not loop on it forever. `vreserve quarantine list` / `replay ID`.
CREATE TABLE rejected_records (
    consumer    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    key         bytea,
    raw         bytea NOT NULL,
    reason      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition, "offset")
);

CREATE TABLE quarantined_records (
    quarantine_id  bigserial PRIMARY KEY,
    consumer       text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    "offset"       bigint NOT NULL,
    key            bytea,
    raw            bytea NOT NULL,
    error          text NOT NULL,
    attempts       integer NOT NULL DEFAULT 1,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    quarantined_at timestamptz,          -- set when attempts reached the limit: skipped from then on
    replayed_at    timestamptz,          -- set by `vreserve quarantine replay`
    replayed_by    text,
    UNIQUE (consumer, topic, partition, "offset")
);
CREATE INDEX quarantined_records_open ON quarantined_records (quarantined_at) WHERE replayed_at IS NULL;
