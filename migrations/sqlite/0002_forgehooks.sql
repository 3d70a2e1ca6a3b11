-- Installed ForgeHooks (SQLite twin of migrations/postgres/0002_forgehooks.sql).
CREATE TABLE forgehooks (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    runtime      TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    wasm_sha256  TEXT,
    enabled      BOOLEAN NOT NULL DEFAULT 1,
    builtin      BOOLEAN NOT NULL DEFAULT 0,
    config       TEXT NOT NULL DEFAULT '{}',
    installed_at TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE forgehook_blobs (
    sha256     TEXT PRIMARY KEY,
    wasm       BLOB NOT NULL,
    created_at TEXT NOT NULL
);
