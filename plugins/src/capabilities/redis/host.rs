//! Redis as a capability: its settings, linking, tenant state and purge, and the
//! `wharf:plugin/redis` binding: a plugin's command goes to its tenant's [`super::TenantRedis`]
//! off the plugin CPU, counted and traced as a host call.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};
use wharf_tenancy::{Quotas, RedisQuotas};

use super::recount::EVERY_MAX_SECONDS;
use super::trusted::TrustedScripts;
use super::TenantRedis;
use crate::bindings::wharf::plugin::redis::{add_to_linker, Host, RedisValue};
use crate::bindings::wharf::plugin::types::HostError as WitError;
use crate::capabilities::{
    Capability, HostError, InstanceContext, NodeContext, SettingsError, TenantContext,
};
use crate::state::{off_cpu, PluginState};

/// Where the fleet's Redis is: `redis = "redis://…"` in the bootstrap file, or a `[redis]`
/// section with `url`, the operator's `trusted_scripts` (Lua scripts tenants may run with
/// EVAL/EVALSHA: files, or their SHA1s) and `recount_every_seconds` (how often the fleet
/// recounts tenants' usage, `recount.rs`); unset, plugins' Redis calls get `backend-unavailable`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(from = "RawSettings")]
pub struct RedisSettings {
    pub url: Option<String>,
    pub trusted_scripts: Vec<String>,
    pub recount_every_seconds: u64,
}

/// Ten minutes: expired keys' bytes come back within about that, for a walk of a few percent of
/// Redis while it runs.
const RECOUNT_EVERY_SECONDS: u64 = 600;

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            trusted_scripts: Vec::new(),
            recount_every_seconds: RECOUNT_EVERY_SECONDS,
        }
    }
}

/// The two shapes the bootstrap file may give.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RawSettings {
    Url(String),
    Section(Section),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    url: Option<String>,
    #[serde(default)]
    trusted_scripts: Vec<String>,
    recount_every_seconds: Option<u64>,
}

impl From<RawSettings> for RedisSettings {
    fn from(raw: RawSettings) -> Self {
        match raw {
            RawSettings::Url(url) => RedisSettings {
                url: Some(url),
                ..RedisSettings::default()
            },
            RawSettings::Section(s) => RedisSettings {
                url: s.url,
                trusted_scripts: s.trusted_scripts,
                recount_every_seconds: s.recount_every_seconds.unwrap_or(RECOUNT_EVERY_SECONDS),
            },
        }
    }
}

/// The capability: one Redis for the node, a pool and key namespace per tenant, and the
/// scripts the operator trusts.
pub struct Redis {
    url: Option<String>,
    trusted: Arc<TrustedScripts>,
    recount_every: std::time::Duration,
}

impl Capability for Redis {
    const NAME: &'static str = "redis";
    type Settings = RedisSettings;
    type Quotas = RedisQuotas;
    type TenantState = TenantRedis;
    type InstanceState = ();

    fn new(settings: RedisSettings, _: &NodeContext) -> Result<Self, SettingsError> {
        let trusted =
            TrustedScripts::load(&settings.trusted_scripts).map_err(|reason| SettingsError {
                capability: Self::NAME,
                reason: format!("trusted_scripts: {reason}"),
            })?;
        if !(1..=EVERY_MAX_SECONDS).contains(&settings.recount_every_seconds) {
            return Err(SettingsError {
                capability: Self::NAME,
                reason: format!(
                    "recount_every_seconds: {} is not between 1 and {EVERY_MAX_SECONDS}",
                    settings.recount_every_seconds
                ),
            });
        }
        Ok(Redis {
            url: settings.url,
            trusted: Arc::new(trusted),
            recount_every: std::time::Duration::from_secs(settings.recount_every_seconds),
        })
    }

    fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
        add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |s| s)
    }

    fn quotas(all: &Quotas) -> &RedisQuotas {
        &all.redis
    }

    fn instance(_: &InstanceContext<'_>) {}

    async fn open(&self, ctx: TenantContext<'_, Self>) -> Result<TenantRedis, HostError> {
        let url = self.url.as_deref().ok_or(HostError::BackendUnavailable)?;
        let redis = TenantRedis::new(
            ctx.tenant,
            url,
            ctx.all_quotas,
            ctx.metrics().clone(),
            ctx.results().clone(),
            self.trusted.clone(),
        )?;
        // Best effort: with Redis down the pool is kept, and calls report the outage.
        if let Err(e) = redis.warm().await {
            tracing::debug!(tenant = %ctx.tenant, "first Redis connection failed: {e}");
        }
        Ok(redis)
    }

    /// Each tenant's usage recounted from its live keys, expired keys' bytes released: by one
    /// node of the fleet, once per `recount_every_seconds`.
    async fn upkeep(&self, tenants: &[String]) -> Result<(), HostError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let pace = super::Pace {
            every: self.recount_every,
            ..super::Pace::default()
        };
        match super::recount(url, tenants, pace).await? {
            Some(done) => tracing::info!(
                keys = done.keys,
                tenants = done.tenants,
                released_bytes = done.released,
                seconds = started.elapsed().as_secs_f64(),
                "Redis usage recounted"
            ),
            None => tracing::debug!("another node recounts Redis usage, or did lately"),
        }
        Ok(())
    }

    /// Its keys, and Wharf's keys about it.
    async fn purge(&self, tenant: &str) -> Result<(), HostError> {
        match &self.url {
            Some(url) => super::purge(url, tenant).await,
            None => Ok(()),
        }
    }
}

impl Host for PluginState {
    async fn command(&mut self, name: String, args: Vec<Vec<u8>>) -> Result<RedisValue, WitError> {
        let call = self.host_call("redis.command");
        let io = async {
            let redis = self.capability::<Redis>().await?;
            redis.command(&name, args).await
        };
        let result = off_cpu(self, io).await;
        call.finish(self, &result);
        result.map_err(Into::into)
    }
}
