-- Installed ForgeHooks. `manifest` is the manifest in force (describe() or the override);
-- `wasm_sha256` keys the artifact cache for WASM ForgeHooks and is NULL for other runtimes.
CREATE TABLE forgehooks (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    version      TEXT NOT NULL,
    runtime      TEXT NOT NULL,
    manifest     JSONB NOT NULL,
    wasm_sha256  TEXT,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    builtin      BOOLEAN NOT NULL DEFAULT FALSE,
    config       JSONB NOT NULL DEFAULT '{}',
    installed_at TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- The uploaded components themselves, so every server sharing this database can load them
-- (each keeps its own precompiled cache on local disk).
CREATE TABLE forgehook_blobs (
    sha256     TEXT PRIMARY KEY,
    wasm       BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
