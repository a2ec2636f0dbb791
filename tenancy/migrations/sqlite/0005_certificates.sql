-- Tenants' TLS certificates for their own hostnames. The private key is stored sealed with the
-- operator's key (the gateway encrypts it before it gets here; the store never sees it in clear).
CREATE TABLE certificates (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    key_sealed TEXT NOT NULL,
    hostnames TEXT NOT NULL,
    not_after_ms BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
