-- Agent output schemas, and what asynchronous, idempotent, leased runs need.
ALTER TABLE agents ADD COLUMN output_schema JSONB;

ALTER TABLE agent_runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'sync'
    CHECK (mode IN ('sync', 'async', 'stream'));
-- The effective limits (agent config lowered by the request), fixed when the run is created.
ALTER TABLE agent_runs ADD COLUMN limits JSONB;
ALTER TABLE agent_runs ADD COLUMN callback_url TEXT;
ALTER TABLE agent_runs ADD COLUMN callback_attempts JSONB NOT NULL DEFAULT '[]';
ALTER TABLE agent_runs ADD COLUMN idempotency_key TEXT;
ALTER TABLE agent_runs ADD COLUMN request_hash TEXT;
-- A running run belongs to the worker holding an unexpired lease on it.
ALTER TABLE agent_runs ADD COLUMN lease_owner TEXT;
ALTER TABLE agent_runs ADD COLUMN lease_expires_at TIMESTAMPTZ;

CREATE UNIQUE INDEX agent_runs_idempotency ON agent_runs (agent_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX agent_runs_queue ON agent_runs (seq) WHERE status = 'pending' AND mode = 'async';
CREATE INDEX agent_runs_leases ON agent_runs (lease_expires_at) WHERE status = 'running';
