-- Agent output schemas, and what asynchronous, idempotent, leased runs need.
ALTER TABLE agents ADD COLUMN output_schema TEXT;

ALTER TABLE agent_runs ADD COLUMN mode TEXT NOT NULL DEFAULT 'sync'
    CHECK (mode IN ('sync', 'async', 'stream'));
ALTER TABLE agent_runs ADD COLUMN limits TEXT;
ALTER TABLE agent_runs ADD COLUMN callback_url TEXT;
ALTER TABLE agent_runs ADD COLUMN callback_attempts TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agent_runs ADD COLUMN idempotency_key TEXT;
ALTER TABLE agent_runs ADD COLUMN request_hash TEXT;
ALTER TABLE agent_runs ADD COLUMN lease_owner TEXT;
ALTER TABLE agent_runs ADD COLUMN lease_expires_at TEXT;

CREATE UNIQUE INDEX agent_runs_idempotency ON agent_runs (agent_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX agent_runs_queue ON agent_runs (seq) WHERE status = 'pending' AND mode = 'async';
CREATE INDEX agent_runs_leases ON agent_runs (lease_expires_at) WHERE status = 'running';
