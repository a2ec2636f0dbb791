use thiserror::Error;

/// Why a tenant, hostname or route was refused. Messages say what to change.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValidationError {
    #[error("invalid id {0:?}: use 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit")]
    BadId(String),
    #[error("tenant id {0:?} is reserved for Wharf itself; choose another")]
    ReservedId(String),
    #[error("invalid hostname {0:?}: use a DNS name like api.acme.test or a wildcard like *.acme.test (no port, no scheme)")]
    BadHostname(String),
    #[error("invalid path prefix {0:?}: it must start with '/' and contain no '?', '#', spaces or '..' segments")]
    BadPathPrefix(String),
    #[error("invalid method {0:?}: use an HTTP method token such as GET or POST")]
    BadMethod(String),
    #[error("route {0:?} has no upstream targets: give at least one host:port")]
    NoUpstreams(String),
    #[error("invalid upstream target {0:?}: use ip:port, host:port, http://host[:port] or https://host[:port] (for example 10.0.0.5:8080 or https://api.internal)")]
    BadUpstream(String),
    #[error("upstream_tls: {0}")]
    TlsUpstream(String),
    #[error("upstream weight must be between 1 and 1000, got {0}")]
    BadWeight(u32),
    #[error("retries must be between 0 and 5, got {0}")]
    BadRetries(u32),
    #[error("timeout {name} must be between 1 ms and 3600000 ms, got {value}")]
    BadTimeout { name: &'static str, value: u64 },
    #[error("display name must be 1-200 characters, without control characters")]
    BadDisplayName,
    #[error("quota {name} must be between {min} and {max}, got {value}")]
    BadQuota {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("unknown quota {name:?}; known: {known}")]
    UnknownQuota { name: String, known: String },
    #[error("quota {name}: {reason}")]
    BadQuotaValue { name: String, reason: String },
    #[error("send quota updates as a JSON object of quota names and values")]
    QuotaPatchNotAnObject,
    #[error("plugin config must have at most 64 entries, keys of 1-128 bytes and values of at most 4096 bytes")]
    BadPluginConfig,
    #[error(
        "{field}: {size} bytes, the limit is {limit} (the configuration a proxy-wasm plugin reads)"
    )]
    ProxyConfigTooLarge {
        field: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("allowed_outbound_hosts: {0:?} is not a destination like https://api.example.com, https://*.example.com or http://10.0.0.5:8080 (scheme, host, optional port or :*; no path)")]
    BadOutboundHost(String),
    #[error("allowed_outbound_hosts: at most 16 entries per plugin attachment, got {0}")]
    TooManyOutboundHosts(usize),
    #[error("a route may chain at most 16 plugins, got {0}")]
    ChainTooLong(usize),
}

/// Errors from the config store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("tenant {0:?} does not exist")]
    UnknownTenant(String),
    #[error("tenant {0:?} already exists")]
    TenantExists(String),
    #[error("route {route:?} does not exist for tenant {tenant:?}")]
    UnknownRoute { tenant: String, route: String },
    #[error("hostname {hostname:?} overlaps {existing:?}, which belongs to tenant {owner:?}; a host can have only one owner")]
    HostnameTaken {
        hostname: String,
        existing: String,
        owner: String,
    },
    #[error("route {new:?} has the same path prefix {prefix:?} and overlapping methods as route {existing:?}")]
    RouteConflict {
        new: String,
        existing: String,
        prefix: String,
    },
    #[error(
        "plugin {name:?} version {version} does not exist for tenant {tenant:?}; upload it first"
    )]
    UnknownPlugin {
        tenant: String,
        name: String,
        version: i64,
    },
    #[error("certificate {name:?} does not exist for tenant {tenant:?}")]
    UnknownCertificate { tenant: String, name: String },
    #[error("API key {0:?} does not exist or is already revoked")]
    UnknownApiKey(String),
    #[error("plugin {plugin:?} is attached to route {route:?}; detach it first")]
    PluginInUse { plugin: String, route: String },
    #[error("quota {quota} is {limit}; this change needs {wanted}: remove something first, or ask the operator to raise it")]
    QuotaExceeded {
        quota: &'static str,
        limit: u64,
        wanted: u64,
    },
    #[error("{cap} is {limit} ACME orders per hour and this hour's are used; retry later, or ask the operator to raise it")]
    OrderCap { cap: &'static str, limit: u64 },
    #[error("quota {quota} is {floor}; {asked} is below it")]
    BelowQuota {
        quota: &'static str,
        floor: u64,
        asked: u64,
    },
    #[error("unsupported store URL {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    BadUrl(String),
    #[error("stored config is corrupt ({0}); fix the row or restore from backup")]
    Corrupt(String),
    #[error("config store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("config store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// The database refused a value as one it cannot hold (Postgres: a NUL in text, an
    /// untranslatable character): the input's fault, not the store's.
    pub fn is_unstorable_value(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(d))
            if matches!(d.code().as_deref(), Some("22021") | Some("22P05")))
    }
}
