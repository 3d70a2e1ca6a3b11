-- The W3C trace context (a `traceparent`) a run was created under, so that its spans join
-- the caller's trace when it executes later or on another server.
ALTER TABLE agent_runs ADD COLUMN trace_context TEXT;
