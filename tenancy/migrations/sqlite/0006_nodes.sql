-- Gateway nodes sharing this store, each reporting the config version it serves (operators see
-- a fleet converge, or a node stuck behind). Not config: writing here bumps no version.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    config_version BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL
);
