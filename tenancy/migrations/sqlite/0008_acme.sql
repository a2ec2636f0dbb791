-- ACME (RFC 8555) certificates for tenants' hostnames. One row per hostname a tenant asked a
-- certificate for: its order state, the lease of the node ordering it (a fleet orders a name
-- once), and once issued the chain and its key, sealed with the operator's key like uploads.
CREATE TABLE acme_hostnames (
    hostname TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    state TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    chain_pem TEXT NOT NULL DEFAULT '',
    key_sealed TEXT NOT NULL DEFAULT '',
    not_after_ms BIGINT NOT NULL DEFAULT 0,
    fingerprint TEXT NOT NULL DEFAULT '',
    issued_at_ms BIGINT NOT NULL DEFAULT 0,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX acme_hostnames_tenant ON acme_hostnames (tenant_id);
CREATE INDEX acme_hostnames_due ON acme_hostnames (next_attempt_ms);

-- HTTP-01 answers while an order waits for the CA: in the store, so whichever node the CA
-- reaches answers. Not config: writing here bumps no version.
CREATE TABLE acme_challenges (
    token TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    key_authorization TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

-- Orders placed at the CA, for the per-tenant and per-fleet hourly caps.
CREATE TABLE acme_orders (
    tenant_id TEXT NOT NULL,
    hostname TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX acme_orders_at ON acme_orders (at_ms);
CREATE INDEX acme_orders_tenant ON acme_orders (tenant_id, at_ms);

-- The fleet's ACME account per directory (staging and production are separate accounts), its
-- credentials sealed with the operator's key.
CREATE TABLE acme_accounts (
    directory_url TEXT PRIMARY KEY,
    credentials_sealed TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
