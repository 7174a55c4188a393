-- Chosen public names (`share --public-name`) are unique among live shares only, so a
-- name is free again when its share ends; `http_tls` marks a public URL served from the
-- sharing machine's HTTPS server (`share --https-port`). SQLite cannot drop a column's
-- UNIQUE constraint, so the table is rebuilt (the same statements run on PostgreSQL).
CREATE TABLE shares_new (
    lookup      TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    public_name TEXT NOT NULL,
    block       BIGINT NOT NULL,
    routes      TEXT NOT NULL,
    all_ports   TEXT,
    http_port   BIGINT,
    key_mac     TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    ended_at    BIGINT,
    http_auth   TEXT,
    ssh_user    TEXT,
    http_tls    BIGINT NOT NULL DEFAULT 0
);
INSERT INTO shares_new (lookup, agent_id, name, public_name, block, routes, all_ports,
    http_port, key_mac, state, created_at, expires_at, ended_at, http_auth, ssh_user)
SELECT lookup, agent_id, name, public_name, block, routes, all_ports,
    http_port, key_mac, state, created_at, expires_at, ended_at, http_auth, ssh_user
FROM shares;
DROP TABLE shares;
ALTER TABLE shares_new RENAME TO shares;
CREATE UNIQUE INDEX shares_live_block ON shares (block) WHERE state = 'active';
CREATE UNIQUE INDEX shares_live_public_name ON shares (public_name) WHERE state = 'active';
CREATE INDEX shares_by_agent ON shares (agent_id);
CREATE INDEX shares_by_expiry ON shares (expires_at) WHERE state = 'active';
