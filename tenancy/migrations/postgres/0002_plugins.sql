-- Plugin bytes by content hash: identical uploads are stored once, whoever uploads them.
CREATE TABLE plugin_blobs (
    sha256 TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL,
    size BIGINT NOT NULL
);

-- Immutable versions of a tenant's plugins.
CREATE TABLE plugin_versions (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL REFERENCES plugin_blobs(sha256),
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);
