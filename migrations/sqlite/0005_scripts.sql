-- Rhai hook scripts, the hooks of agents, and the hook records of runs
-- (SQLite twin of migrations/postgres/0005_scripts.sql).
CREATE TABLE scripts (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          BLOB NOT NULL UNIQUE,
    name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 100),
    description TEXT,
    source      TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

ALTER TABLE agents ADD COLUMN hooks TEXT NOT NULL DEFAULT '[]';

CREATE TABLE run_hooks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id         BLOB NOT NULL REFERENCES agent_runs (id) ON DELETE CASCADE,
    hook           TEXT NOT NULL,
    script         TEXT NOT NULL,
    script_id      BLOB NOT NULL,
    script_version INTEGER NOT NULL,
    step           INTEGER,
    duration_ms    REAL NOT NULL,
    outcome        TEXT NOT NULL,
    logs           TEXT NOT NULL DEFAULT '[]',
    created_at     TEXT NOT NULL
);
CREATE INDEX run_hooks_by_run ON run_hooks (run_id, seq);
