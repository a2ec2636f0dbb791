use thiserror::Error;

/// Why a plugin failed its request. Each variant has a stable code clients see.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PluginError {
    #[error("plugin {plugin:?} used up its fuel budget ({fuel} units) for this request")]
    FuelExhausted { plugin: String, fuel: u64 },
    #[error("plugin {plugin:?} ran past its {deadline_ms} ms deadline")]
    Timeout { plugin: String, deadline_ms: u64 },
    #[error("plugin {plugin:?} tried to use more than its {limit_bytes} bytes of memory")]
    MemoryLimit { plugin: String, limit_bytes: u64 },
    #[error("plugin {plugin:?} trapped: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin {plugin:?} could not run: {reason}; retry later or raise the tenant's instance quota")]
    Capacity { plugin: String, reason: String },
    #[error("plugin {plugin:?} returned an invalid action: {reason}")]
    InvalidOutput { plugin: String, reason: String },
    #[error("plugin {plugin:?} is not available: {reason}")]
    Unavailable { plugin: String, reason: String },
}

impl PluginError {
    pub fn code(&self) -> &'static str {
        match self {
            PluginError::FuelExhausted { .. } => "plugin_fuel_exhausted",
            PluginError::Timeout { .. } => "plugin_timeout",
            PluginError::MemoryLimit { .. } => "plugin_memory_limit",
            PluginError::Trap { .. } => "plugin_trap",
            PluginError::Capacity { .. } => "plugin_capacity",
            PluginError::InvalidOutput { .. } => "plugin_invalid_output",
            PluginError::Unavailable { .. } => "plugin_unavailable",
        }
    }

    /// Capacity is the gateway's limit, not the plugin's fault: 503. Everything else: 502.
    pub fn status(&self) -> u16 {
        match self {
            PluginError::Capacity { .. } => 503,
            PluginError::Timeout { .. } => 504,
            _ => 502,
        }
    }

    /// Metric outcome label.
    pub fn outcome(&self) -> &'static str {
        self.code().trim_start_matches("plugin_")
    }

    pub fn plugin(&self) -> &str {
        match self {
            PluginError::FuelExhausted { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::Capacity { plugin, .. }
            | PluginError::InvalidOutput { plugin, .. }
            | PluginError::Unavailable { plugin, .. } => plugin,
        }
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
    #[error("this tenant already has uploads waiting to compile; retry when they have finished")]
    Busy,
    #[error("cannot compile now: {0}")]
    Unavailable(String),
}
