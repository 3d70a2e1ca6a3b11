-- MCP servers registered as tool sources of agents
-- (SQLite twin of migrations/postgres/0009_mcp_servers.sql).
CREATE TABLE mcp_servers (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
