-- A contract's site terms (issue 16): its reporting interval (a site whose last reading is older
-- than this interval x the planner's tolerance contributes nothing to a plan until it reports
-- again) and the physical capacity of the site for the material (a reading above it is a finding).
-- A side table (like contract_penalty_terms): the registry loader copies contracts with CREATE TEMP
-- TABLE ... (LIKE contracts), which new NOT NULL columns would break. A contract without a row (or a
-- NULL) has the default interval (dispatcher.snapshot.DEFAULT_REPORTING_INTERVAL_S) and no capacity.
CREATE TABLE contract_site_terms (
    contract_id          text PRIMARY KEY REFERENCES contracts (contract_id) ON DELETE CASCADE,
    reporting_interval_s double precision CHECK (reporting_interval_s > 0),
    capacity_qty         numeric CHECK (capacity_qty > 0)
);
