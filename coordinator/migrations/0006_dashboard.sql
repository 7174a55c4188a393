-- The web dashboard: one-time login links and the sessions they open, both kept only as
-- hashes of their tokens. `agent_id` is NULL for the hub's admin.
CREATE TABLE login_links (
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT,
    expires_at BIGINT NOT NULL
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT,
    csrf       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
-- Who may join, as the sharer set it (`share --max-joins`, `--approve`): the hub shows it
-- and refuses early; the sharing agent enforces it.
ALTER TABLE shares ADD COLUMN max_joins BIGINT;
ALTER TABLE shares ADD COLUMN approve BIGINT NOT NULL DEFAULT 0;
