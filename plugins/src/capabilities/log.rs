//! `wharf:plugin/log`: plugin logs go to the gateway's log, attributed to tenant and plugin.
//! Quota (`LogQuotas`): lines per request and a cap on line length, so a chatty or hostile
//! plugin cannot flood the operator's logs.

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext};
use crate::bindings::wharf::plugin::log::{add_to_linker, Host, Level};
use crate::state::PluginState;
use wharf_tenancy::LogQuotas;

/// The capability: nothing per node or tenant; a line budget per instance.
pub struct Log;

impl Capability for Log {
    const NAME: &'static str = "log";
    type Settings = ();
    type Quotas = LogQuotas;
    type TenantState = ();
    type InstanceState = LogBudget;

    fn new(_: (), _: &NodeContext) -> Result<Self, SettingsError> {
        Ok(Log)
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(all: &wharf_tenancy::Quotas) -> &LogQuotas {
        &all.log
    }

    fn instance(ctx: &InstanceContext<'_>) -> LogBudget {
        let q = Self::quotas(ctx.quotas);
        LogBudget {
            remaining: q.lines_per_request,
            line_bytes: q.line_bytes as usize,
            held: Vec::new(),
            held_dropped: 0,
        }
    }

    async fn open(&self, _: TenantContext<'_, Self>) -> Result<(), HostError> {
        Ok(())
    }
}

/// What one instance may still write.
#[derive(Clone)]
pub struct LogBudget {
    remaining: u32,
    line_bytes: usize,
    /// Lines a call without a fiber wrote, emitted when it ends: if a tick ends it to restart
    /// on a fiber, they are dropped, and the restarted call writes them once (`fiberless.rs`).
    held: Vec<(tracing::Level, String)>,
    /// Lines over the budget such a call wrote, counted as dropped when it ends.
    held_dropped: u32,
}

impl LogBudget {
    /// The held lines go, and their budget comes back (the call restarts).
    pub(crate) fn drop_held(&mut self) {
        self.remaining = self
            .remaining
            .saturating_add(u32::try_from(self.held.len()).unwrap_or(u32::MAX));
        self.held.clear();
        self.held_dropped = 0;
    }
}

impl Host for PluginState {
    fn log(&mut self, level: Level, message: String) {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.log_line(level, &message);
    }
}

impl PluginState {
    /// One line of the plugin's log, within its budget (every plugin kind logs through here).
    pub fn log_line(&mut self, level: tracing::Level, message: &str) {
        if self.caps.log.remaining == 0 {
            if self.fiberless {
                self.caps.log.held_dropped += 1;
            } else {
                self.count_dropped(1);
            }
            return;
        }
        self.caps.log.remaining -= 1;
        let mut end = message.len().min(self.caps.log.line_bytes);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let msg = &message[..end];
        if self.fiberless {
            self.caps.log.held.push((level, msg.to_string()));
            return;
        }
        self.emit_line(level, msg);
    }

    /// The lines a call without a fiber held, now that it ended.
    pub(crate) fn emit_held_lines(&mut self) {
        for (level, msg) in std::mem::take(&mut self.caps.log.held) {
            self.emit_line(level, &msg);
        }
        let dropped = std::mem::take(&mut self.caps.log.held_dropped);
        if dropped > 0 {
            self.count_dropped(dropped);
        }
    }

    fn count_dropped(&self, lines: u32) {
        let label = self.metrics.tenant(&self.tenant);
        self.metrics
            .plugin_logs_total
            .with_label_values(&[&label, "dropped"])
            .inc_by(u64::from(lines));
    }

    fn emit_line(&self, level: tracing::Level, msg: &str) {
        let tenant = self.tenant.as_ref();
        let label = self.metrics.tenant(tenant);
        self.metrics
            .plugin_logs_total
            .with_label_values(&[&label, "emitted"])
            .inc();
        let plugin = self.plugin.as_ref();
        match level {
            tracing::Level::TRACE => {
                tracing::trace!(target: "wharf::plugin", tenant, plugin, "{msg}")
            }
            tracing::Level::DEBUG => {
                tracing::debug!(target: "wharf::plugin", tenant, plugin, "{msg}")
            }
            tracing::Level::INFO => {
                tracing::info!(target: "wharf::plugin", tenant, plugin, "{msg}")
            }
            tracing::Level::WARN => {
                tracing::warn!(target: "wharf::plugin", tenant, plugin, "{msg}")
            }
            _ => tracing::error!(target: "wharf::plugin", tenant, plugin, "{msg}"),
        }
    }
}
