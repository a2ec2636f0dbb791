-- One row: bumped by every mutation, in the same transaction, so nodes notice changes by polling it.
CREATE TABLE config_meta (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL,
    changed_at_ms BIGINT NOT NULL
);
INSERT INTO config_meta (id, version, changed_at_ms) VALUES (1, 1, 0);

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    quotas TEXT NOT NULL DEFAULT '{}',
    created_at_ms BIGINT NOT NULL
);

-- The primary key makes a pattern ownable once; overlaps (wildcards) are checked in code.
CREATE TABLE hostnames (
    pattern TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE
);

CREATE TABLE routes (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
