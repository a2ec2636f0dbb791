-- Which tenant each config version changed, so nodes reload only those tenants. Written in the
-- same transaction as the change; old rows are pruned (a node that falls further behind than
-- the log reaches reloads everything once).
CREATE TABLE config_changes (
    version BIGINT PRIMARY KEY,
    tenant_id TEXT NOT NULL
);

-- One tenant's hostnames without a scan (admin reads, incremental reloads).
CREATE INDEX hostnames_by_tenant ON hostnames (tenant_id);
