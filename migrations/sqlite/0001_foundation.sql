-- Foundation schema: agents, runs, steps, API keys (SQLite twin of migrations/postgres).
-- UUIDs are 16-byte BLOBs and JSON is TEXT, as sqlx encodes them; `seq` is the paging key.

CREATE TABLE agents (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               BLOB NOT NULL UNIQUE,
    name             TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    slug             TEXT NOT NULL,
    description      TEXT,
    model            TEXT NOT NULL,
    provider         TEXT NOT NULL,
    system_prompt    TEXT NOT NULL,
    tools            TEXT NOT NULL DEFAULT '[]',
    config           TEXT NOT NULL,
    is_public        BOOLEAN NOT NULL DEFAULT 0,
    api_key_required BOOLEAN NOT NULL DEFAULT 0,
    allowed_api_keys TEXT NOT NULL DEFAULT '[]',
    created_by       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    deleted_at       TEXT
);
CREATE UNIQUE INDEX agents_name_live ON agents (name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX agents_slug_live ON agents (slug) WHERE deleted_at IS NULL;

CREATE TABLE agent_runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            BLOB NOT NULL UNIQUE,
    agent_id      BLOB NOT NULL REFERENCES agents (id),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed',
                                                  'timeout', 'max_steps', 'cancelled', 'interrupted')),
    input_text    TEXT NOT NULL,
    input_data    TEXT,
    output        TEXT,
    output_text   TEXT,
    error_code    TEXT,
    error_message TEXT,
    total_steps   INTEGER NOT NULL DEFAULT 0,
    tokens_input  INTEGER NOT NULL DEFAULT 0,
    tokens_output INTEGER NOT NULL DEFAULT 0,
    duration_ms   INTEGER,
    triggered_by  TEXT,
    ip_address    TEXT,
    user_agent    TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    completed_at  TEXT,
    updated_at    TEXT NOT NULL
);
CREATE INDEX agent_runs_by_agent ON agent_runs (agent_id, seq DESC);
CREATE INDEX agent_runs_by_status ON agent_runs (status, seq DESC);
CREATE INDEX agent_runs_by_trigger ON agent_runs (triggered_by, seq DESC);

CREATE TABLE agent_run_steps (
    run_id      BLOB NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL CHECK (step >= 1),
    tool        TEXT NOT NULL,
    action      TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE api_keys (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           BLOB NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('admin', 'invoke')),
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
