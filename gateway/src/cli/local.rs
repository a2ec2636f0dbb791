//! The admin API in the CLI's own process, over the config store the command line names: what
//! an operator on a node runs without a gateway up (or without its token). Commands go through
//! the same handlers as over the network, as the operator, with the node's bootstrap settings
//! (plugin runtime, key sealer, Redis and SQL for purging a removed tenant); nothing listens.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::OnceCell;
use wharf_metrics::Metrics;
use wharf_plugins::capabilities::Capabilities;
use wharf_plugins::PluginRuntime;

use super::client::ApiClient;
use super::StoreArgs;
use crate::api::{ApiState, OnDemand};
use crate::bootstrap::{open_store, Bootstrap};

pub async fn api(args: &StoreArgs) -> anyhow::Result<ApiClient> {
    let boot = Bootstrap::load(args.config.as_deref())?.with_store_args(args);
    let store = open_store(args).await?;
    let metrics = Arc::new(Metrics::new());
    let capabilities = Capabilities::new(
        boot.capability_settings()?,
        metrics.clone(),
        boot.host_result_budget_bytes,
    )?;
    // A token for this process alone: the in-process requests carry it, nothing else can.
    let token = hex::encode(rand::random::<[u8; 24]>());
    let runtime = {
        let (settings, cache, metrics) = (
            boot.plugins.clone(),
            boot.compiled_cache_dir(),
            metrics.clone(),
        );
        // Compiled with the gateway's engine settings (this node's disk cache is then warm).
        OnDemand::lazy(move || PluginRuntime::new(settings.clone(), Some(&cache), metrics.clone()))
    };
    let sealer = {
        let (tls, data_dir) = (boot.tls.clone(), boot.data_dir.clone());
        OnDemand::lazy(move || {
            let sealer = crate::tls::key_sealer(&tls, &data_dir)
                .context("cannot load the key-encryption key")?;
            Ok(Arc::new(sealer))
        })
    };
    let state = ApiState {
        store: Arc::new(OnceCell::new_with(Some(store))),
        runtime,
        metrics: metrics.clone(),
        operator_token: Some(token.clone()),
        max_plugin_bytes: boot.plugins.max_plugin_bytes,
        egress: None,
        uploads: Default::default(),
        usage: crate::usage::UsageHistory::new(metrics),
        fleet_usage: None,
        sealer,
        capabilities,
        live: None,
        throttles: Arc::new(crate::api::throttle::AdminThrottles::new(&boot.admin)),
        acme_orders_per_hour: boot.acme.orders_per_hour,
    };
    Ok(ApiClient::local(crate::api::router(state), token))
}
