-- MCP servers registered as tool sources of agents (issue 30). `spec` is the whole
-- registration (transport, secrets, the tool list last read), written and read as one
-- value; the name is the key agents' `mcp:<name>` entries use.
CREATE TABLE mcp_servers (
    name       TEXT PRIMARY KEY,
    spec       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
