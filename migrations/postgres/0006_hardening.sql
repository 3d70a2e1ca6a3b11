-- Idempotency keys belong to the caller that sent them (an API key, or a client address for
-- anonymous callers): the same key from another caller is another run.
ALTER TABLE agent_runs ADD COLUMN idempotency_scope TEXT NOT NULL DEFAULT '';
DROP INDEX agent_runs_idempotency;
CREATE UNIQUE INDEX agent_runs_idempotency ON agent_runs (agent_id, idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
