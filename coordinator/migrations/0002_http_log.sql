-- Public HTTP shares: the access log, and optional basic auth checked at the hub.
CREATE TABLE http_log (
    share_lookup TEXT NOT NULL,
    at           BIGINT NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    status       BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    client       TEXT NOT NULL,
    duration_ms  BIGINT NOT NULL
);
CREATE INDEX http_log_by_share ON http_log (share_lookup, at);

ALTER TABLE shares ADD COLUMN http_auth TEXT;
