//! Host capabilities a plugin may import. Each lives in its own module with the same shape:
//! the WIT binding's `Host` impl on [`PluginState`], its quota check, and its metrics.

pub mod config;
pub mod log;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wharf_metrics::Metrics;

use crate::limits::StoreLimiter;

/// `wharf:plugin/types` has only types, no functions to provide.
impl crate::bindings::types::Host for PluginState {}

/// The data of one plugin instance's store: who it runs for and what it may still spend.
pub struct PluginState {
    pub tenant: Arc<str>,
    pub plugin: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    pub limiter: StoreLimiter,
    pub deadline: Instant,
    pub timed_out: bool,
    pub log: log::LogBudget,
    pub metrics: Arc<Metrics>,
}
