-- Rhai hook scripts, the hooks of agents, and the hook records of runs.
CREATE TABLE scripts (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          UUID PRIMARY KEY,
    -- Scripts import each other by name, so names are unique and never reused silently.
    name        TEXT NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100),
    description TEXT,
    source      TEXT NOT NULL,
    -- Incremented on every update: (id, version) keys the compiled-AST cache.
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

-- Script ids (not names, so a rename does not break an agent), applied in order.
ALTER TABLE agents ADD COLUMN hooks JSONB NOT NULL DEFAULT '[]';

-- One row per hook call of one script; `seq` keeps them in call order. `script_id` has no
-- foreign key: a run's trace outlives the script that produced it.
CREATE TABLE run_hooks (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    run_id         UUID NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    hook           TEXT NOT NULL,
    script         TEXT NOT NULL,
    script_id      UUID NOT NULL,
    script_version BIGINT NOT NULL,
    step           INTEGER,
    duration_ms    DOUBLE PRECISION NOT NULL,
    outcome        JSONB NOT NULL,
    logs           JSONB NOT NULL DEFAULT '[]',
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX run_hooks_by_run ON run_hooks (run_id, seq);
