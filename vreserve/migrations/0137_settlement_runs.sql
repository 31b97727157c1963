-- Settlement runs started over the API in the background (POST /emergencies/{id}/settlement-runs):
-- their progress, read by any API instance (GET /settlement-runs/{id}), so a long settlement is
-- watched rather than waited for. `updated_at` moves with every step; a run still 'running' whose
-- instance died stops moving, and the API reports it stalled.
CREATE TABLE IF NOT EXISTS settlement_runs (
    run_id        text PRIMARY KEY,
    emergency_id  text NOT NULL,
    requested_by  text NOT NULL,
    period_from   date,
    period_to     date,
    state         text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    steps         jsonb NOT NULL DEFAULT '[]'::jsonb,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    outcome       text,
    issued        text,
    error         text
);
CREATE INDEX IF NOT EXISTS settlement_runs_emergency ON settlement_runs (emergency_id, started_at DESC);
