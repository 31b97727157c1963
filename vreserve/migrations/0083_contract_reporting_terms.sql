-- A contract's reporting interval (issue 16, stale stock in plans): a site whose last reading is
-- older than this interval x the planner's tolerance contributes nothing to a plan until it reports
-- again. A side table (like contract_penalty_terms): the registry loader copies contracts with
-- CREATE TEMP TABLE ... (LIKE contracts), which new NOT NULL columns would break. A contract
-- without a row here has the default interval (dispatcher.snapshot.DEFAULT_REPORTING_INTERVAL_S).
CREATE TABLE contract_reporting_terms (
    contract_id          text PRIMARY KEY REFERENCES contracts (contract_id) ON DELETE CASCADE,
    reporting_interval_s double precision NOT NULL CHECK (reporting_interval_s > 0)
);
