-- Foundation schema: agents, runs, steps, API keys.
-- `seq` gives every table a monotonic ordering key for keyset paging, identical on both back ends.

CREATE TABLE agents (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id               UUID PRIMARY KEY,
    name             TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    slug             TEXT NOT NULL,
    description      TEXT,
    model            TEXT NOT NULL,
    provider         TEXT NOT NULL,
    system_prompt    TEXT NOT NULL,
    tools            JSONB NOT NULL DEFAULT '[]',
    config           JSONB NOT NULL,
    is_public        BOOLEAN NOT NULL DEFAULT FALSE,
    api_key_required BOOLEAN NOT NULL DEFAULT FALSE,
    allowed_api_keys JSONB NOT NULL DEFAULT '[]',
    created_by       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    deleted_at       TIMESTAMPTZ
);
-- Partial indexes: a soft-deleted agent frees its name and slug for reuse.
CREATE UNIQUE INDEX agents_name_live ON agents (name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX agents_slug_live ON agents (slug) WHERE deleted_at IS NULL;

CREATE TABLE agent_runs (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id            UUID PRIMARY KEY,
    agent_id      UUID NOT NULL REFERENCES agents (id),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                  'timeout', 'max_steps', 'cancelled', 'interrupted')),
    input_text    TEXT NOT NULL,
    input_data    JSONB,
    output        JSONB,
    output_text   TEXT,
    error_code    TEXT,
    error_message TEXT,
    total_steps   INTEGER NOT NULL DEFAULT 0,
    tokens_input  BIGINT NOT NULL DEFAULT 0,
    tokens_output BIGINT NOT NULL DEFAULT 0,
    duration_ms   BIGINT,
    triggered_by  TEXT,
    ip_address    TEXT,
    user_agent    TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ,
    completed_at  TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX agent_runs_by_agent ON agent_runs (agent_id, seq DESC);
CREATE INDEX agent_runs_by_status ON agent_runs (status, seq DESC);
CREATE INDEX agent_runs_by_trigger ON agent_runs (triggered_by, seq DESC);

CREATE TABLE agent_run_steps (
    run_id      UUID NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL CHECK (step >= 1),
    tool        TEXT NOT NULL,
    action      TEXT NOT NULL,
    input       JSONB NOT NULL,
    output      JSONB,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE api_keys (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('admin', 'invoke')),
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
