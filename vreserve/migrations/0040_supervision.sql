-- Supervision: contract penalty terms, settlement statements (versioned, with adjustments), audits,
-- discrepancies, rejected audit records. Additive only: 0001's tables keep their meaning.

-- Penalty terms beyond 0001's per-unit shortfall penalty (see docs/supervision.md, "Settlement rules").
-- A side table, not new columns on contracts: the registry loader copies contracts with
-- "CREATE TEMP TABLE ... (LIKE contracts)" + "INSERT ... SELECT *", which extra NOT NULL columns
-- would break. A contract without a row here has grace 0 and no late penalty.
CREATE TABLE contract_penalty_terms (
    contract_id                  text PRIMARY KEY REFERENCES contracts (contract_id) ON DELETE CASCADE,
    penalty_grace_share          numeric NOT NULL DEFAULT 0
                                 CHECK (penalty_grace_share >= 0 AND penalty_grace_share < 1),
    late_penalty_minor_per_unit  bigint NOT NULL DEFAULT 0 CHECK (late_penalty_minor_per_unit >= 0),
    source                       text NOT NULL,          -- e.g. 'file:contracts.yaml'
    updated_at                   timestamptz NOT NULL DEFAULT now()
);

-- One settlement statement per (emergency, version). Version 1 is the statement; every later
-- version is an ADJUSTMENT holding only the change since the versions before it. Never updated.
CREATE TABLE settlement_statements (
    statement_id   text PRIMARY KEY,                  -- 'ST-<emergency>-v<version>'
    emergency_id   text NOT NULL REFERENCES emergencies (emergency_id),
    version        integer NOT NULL CHECK (version >= 1),
    kind           text NOT NULL CHECK (kind IN ('statement', 'adjustment')),
    period_from    date NOT NULL,
    period_to      date NOT NULL,
    issued_at      timestamptz NOT NULL,
    content_hash   text NOT NULL,                     -- of the cumulative lines after this version
    total_minor    bigint NOT NULL,
    late_status_ids text[] NOT NULL DEFAULT '{}',     -- status records received after the previous version
    UNIQUE (emergency_id, version)
);

CREATE TABLE settlement_lines (
    statement_id   text NOT NULL REFERENCES settlement_statements (statement_id),
    line_no        integer NOT NULL,
    owner_id       text NOT NULL,
    owner_kind     text NOT NULL,
    site_id        text NOT NULL,
    material_id    text NOT NULL,
    unit           text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('call_off', 'standby_fee', 'shortfall_penalty', 'late_penalty')),
    qty            numeric NOT NULL,                  -- units of the material (unit-days for standby)
    rate_minor     numeric NOT NULL,
    amount_minor   bigint NOT NULL,                   -- positive = owed to the owner, negative = penalty
    contract_id    text,
    order_ids      text[] NOT NULL DEFAULT '{}',
    note           text NOT NULL DEFAULT '',
    PRIMARY KEY (statement_id, line_no)
);

-- Audits: one row per audit record accepted (idempotent on audit_id: a replay changes nothing).
CREATE TABLE audits (
    audit_id        text PRIMARY KEY,
    site_id         text NOT NULL REFERENCES sites (site_id),
    auditor         text NOT NULL,
    at              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    source          text NOT NULL,                    -- 'cli' or 'topic:<partition>:<offset>'
    passed          boolean NOT NULL,
    shortfall_share double precision NOT NULL,
    trust_before    double precision NOT NULL,
    trust_after     double precision NOT NULL,
    status_before   text NOT NULL,
    status_after    text NOT NULL,
    payload         jsonb NOT NULL
);
CREATE INDEX audits_site ON audits (site_id, at);

CREATE TABLE audit_counts (
    audit_id      text NOT NULL REFERENCES audits (audit_id),
    material_id   text NOT NULL REFERENCES materials (material_id),
    reported_qty  numeric NOT NULL,
    counted_qty   numeric NOT NULL CHECK (counted_qty >= 0),
    unit          text NOT NULL,
    PRIMARY KEY (audit_id, material_id)
);

-- "Numbers without goods": a counted quantity well below the reported one.
CREATE TABLE audit_discrepancies (
    discrepancy_id  text PRIMARY KEY,                 -- '<audit_id>:<material>'
    audit_id        text NOT NULL REFERENCES audits (audit_id),
    site_id         text NOT NULL,
    material_id     text NOT NULL,
    reported_qty    numeric NOT NULL,
    counted_qty     numeric NOT NULL,
    unit            text NOT NULL,
    at              timestamptz NOT NULL,
    alert_id        text NOT NULL
);
CREATE INDEX audit_discrepancies_site ON audit_discrepancies (site_id, at);

-- Audit records from the topic that changed nothing, with the reason (the error record).
CREATE TABLE audit_rejections (
    rejection_id  text PRIMARY KEY,                   -- '<topic>:<partition>:<offset>' (replay-safe)
    source        text NOT NULL,
    key           text,
    raw           bytea NOT NULL,
    reason        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
