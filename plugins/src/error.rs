use thiserror::Error;

/// Why a plugin failed its request: which plugin, and what happened (each kind has a stable
/// code clients see).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("plugin {plugin:?} {failure}")]
pub struct PluginError {
    pub plugin: String,
    pub failure: Failure,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Failure {
    #[error("used up its fuel budget ({fuel} units) for this request")]
    FuelExhausted { fuel: u64 },
    #[error("ran past its {deadline_ms} ms deadline")]
    Timeout { deadline_ms: u64 },
    #[error("tried to use more than its {limit_bytes} bytes of memory")]
    MemoryLimit { limit_bytes: u64 },
    #[error("trapped: {0}")]
    Trap(String),
    #[error("could not run: {0}; retry later or raise the tenant's instance quota")]
    Capacity(String),
    #[error("returned an invalid action: {0}")]
    InvalidOutput(String),
    #[error("is not available: {0}")]
    Unavailable(String),
}

impl PluginError {
    pub fn new(plugin: impl Into<String>, failure: Failure) -> PluginError {
        PluginError {
            plugin: plugin.into(),
            failure,
        }
    }

    pub fn code(&self) -> &'static str {
        match self.failure {
            Failure::FuelExhausted { .. } => "plugin_fuel_exhausted",
            Failure::Timeout { .. } => "plugin_timeout",
            Failure::MemoryLimit { .. } => "plugin_memory_limit",
            Failure::Trap(_) => "plugin_trap",
            Failure::Capacity(_) => "plugin_capacity",
            Failure::InvalidOutput(_) => "plugin_invalid_output",
            Failure::Unavailable(_) => "plugin_unavailable",
        }
    }

    /// Capacity is the gateway's limit, not the plugin's fault: 503. Everything else: 502.
    pub fn status(&self) -> u16 {
        match self.failure {
            Failure::Capacity(_) => 503,
            Failure::Timeout { .. } => 504,
            _ => 502,
        }
    }

    /// Metric outcome label.
    pub fn outcome(&self) -> &'static str {
        self.code().trim_start_matches("plugin_")
    }

    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

/// Why an uploaded component was refused. Messages say what to change.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RejectError {
    #[error("plugin is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component is not a wharf:plugin/http-plugin plugin: {0}")]
    WrongWorld(String),
    #[error("proxy-wasm module refused: {0}")]
    ProxyWasm(String),
    #[error("this tenant already has uploads waiting to compile; retry when they have finished")]
    Busy,
    #[error("cannot compile now: {0}")]
    Unavailable(String),
}
