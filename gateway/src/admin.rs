//! The admin listener: `/metrics` for Prometheus, `/healthz` for orchestrators and tests, and the
//! admin API under `/v1`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use wharf_metrics::Metrics;

use crate::live::LiveConfig;

#[derive(Clone)]
pub struct AdminState {
    pub live: Arc<LiveConfig>,
    pub metrics: Arc<Metrics>,
    pub store_up: Arc<AtomicBool>,
}

pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    api: crate::api::ApiState,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
        .merge(crate::api::router(api));
    axum::serve(listener, app).await
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// Always 200 while the process serves: a store outage degrades config freshness, not traffic.
async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "config_version": s.live.load().version,
        "store_up": s.store_up.load(Ordering::Relaxed),
    }))
}
