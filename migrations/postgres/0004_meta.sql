-- Small server-wide facts, e.g. which built-in ForgeHooks were ever installed (so one an
-- admin removed is not installed again at the next start).
CREATE TABLE server_meta (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
