-- One schema for SQLite and PostgreSQL: TEXT, BIGINT (booleans as 0/1, times as Unix
-- milliseconds), no engine-specific types, so the same queries run on both.
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    relay_key   TEXT NOT NULL,
    relay_id    BIGINT NOT NULL UNIQUE,
    guest       BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE enrollment_keys (
    id          TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL UNIQUE,
    reusable    BIGINT NOT NULL,
    expires_at  BIGINT,
    uses        BIGINT NOT NULL,
    revoked     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE services (
    agent_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    target      TEXT NOT NULL,
    port        BIGINT NOT NULL,
    protocol    TEXT NOT NULL,
    PRIMARY KEY (agent_id, name)
);

CREATE TABLE shares (
    lookup      TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    public_name TEXT NOT NULL UNIQUE,
    block       BIGINT NOT NULL,
    routes      TEXT NOT NULL,
    all_ports   TEXT,
    http_port   BIGINT,
    key_mac     TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    ended_at    BIGINT
);

-- No two live shares may hold the same address block, even with several hubs.
CREATE UNIQUE INDEX shares_live_block ON shares (block) WHERE state = 'active';
CREATE INDEX shares_by_agent ON shares (agent_id);
CREATE INDEX shares_by_expiry ON shares (expires_at) WHERE state = 'active';

CREATE TABLE joins (
    share_lookup TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    key_mac      TEXT NOT NULL,
    joiner_host  BIGINT NOT NULL,
    from_addr    TEXT NOT NULL,
    at           BIGINT NOT NULL,
    PRIMARY KEY (share_lookup, agent_id)
);
CREATE UNIQUE INDEX joins_host ON joins (share_lookup, joiner_host);
