-- The callback outbox: a run with a callback_url owes a delivery from its creation on; once
-- it is terminal, any server's delivery worker claims it (callback_claimed_until, so that
-- two servers never send the same attempt), sends it, and sets the next attempt's time or
-- NULL when delivered or given up. A crash between the end of a run and its callback
-- therefore loses nothing: the next server to start sends it.
ALTER TABLE agent_runs ADD COLUMN callback_due_at TIMESTAMPTZ;
ALTER TABLE agent_runs ADD COLUMN callback_claimed_until TIMESTAMPTZ;
CREATE INDEX agent_runs_callbacks_due ON agent_runs (callback_due_at)
    WHERE callback_due_at IS NOT NULL;
