//! A tenant's routes and the plugin chains on them.

use axum::extract::{Path, State};
use axum::Json;
use wharf_tenancy::outbound::OutboundHost;
use wharf_tenancy::{PluginAttachment, Route, StoreError};

use super::schema::{
    AttachBody, Changed, ErrorBody, PluginAttached, RouteBody, RouteDetail, RouteList,
};
use super::{ApiError, ApiState, Principal};

#[utoipa::path(get, path = "/v1/tenants/{tenant}/routes", tag = "routes",
    params(("tenant" = String, Path)),
    responses((status = 200, body = RouteList), (status = "4XX", body = ErrorBody)))]
pub(super) async fn list(
    State(s): State<ApiState>,
    who: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<RouteList>, ApiError> {
    who.scope(&tenant)?;
    let routes = s.store().await?.tenant(&tenant).await?.routes;
    Ok(Json(RouteList { routes }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/routes/{route}", tag = "routes",
    params(("tenant" = String, Path), ("route" = String, Path)),
    responses((status = 200, body = RouteDetail), (status = "4XX", body = ErrorBody)))]
pub(super) async fn get(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, route)): Path<(String, String)>,
) -> Result<Json<RouteDetail>, ApiError> {
    who.scope(&tenant)?;
    let stored = s.store().await?.route(&tenant, &route).await?;
    let targets = s
        .live
        .as_ref()
        .map(|l| l.targets(&tenant, &route))
        .unwrap_or_default();
    Ok(Json(RouteDetail {
        route: stored,
        targets,
    }))
}

/// Creates or replaces a route; its plugin chain is kept as it is.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/routes/{route}", tag = "routes",
    params(("tenant" = String, Path), ("route" = String, Path)), request_body = RouteBody,
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn put(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, id)): Path<(String, String)>,
    Json(b): Json<RouteBody>,
) -> Result<Json<Changed>, ApiError> {
    who.scope(&tenant)?;
    // The CLI's in-process API on a node has no write-time check: the operator there is
    // trusted, and every node checks each address again before it dials it.
    if let Some(egress) = &s.egress {
        for u in &b.upstreams {
            egress.check_target(&u.addr).map_err(|why| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "upstream_forbidden",
                    format!("upstream {}: {why}", u.addr),
                )
            })?;
        }
    }
    if let Some(pem) = &b.upstream_tls.ca_pem {
        if pem.len() <= wharf_tenancy::model::MAX_CA_PEM_BYTES
            && crate::tls::ca::parse_ca(pem).is_empty()
        {
            return Err(ApiError::bad_request(
                "upstream_tls.ca_pem: no X.509 certificate in it; send PEM certificates",
            ));
        }
    }
    let store = s.store_as(&who).await?;
    if let Some(name) = &b.upstream_tls.client_certificate {
        let certs = store.tenant(&tenant).await?.certificates;
        if !certs.iter().any(|c| &c.name == name) {
            return Err(ApiError::bad_request(format!(
                "upstream_tls.client_certificate: the tenant has no certificate {name:?}; upload it first"
            )));
        }
    }
    let route = Route {
        id,
        path_prefix: b.path_prefix,
        methods: b.methods,
        upstreams: b.upstreams,
        timeouts: b.timeouts,
        health_check: b.health_check,
        upstream_protocol: b.upstream_protocol,
        retries: b.retries,
        upstream_tls: b.upstream_tls,
        host_header: b.host_header,
        plugins: Vec::new(),
    };
    // The chain is kept as it is in the store at write time (attach/detach change it).
    let v = store.put_route_keeping_plugins(&tenant, route).await?;
    Ok(Json(Changed { config_version: v }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/routes/{route}", tag = "routes",
    params(("tenant" = String, Path), ("route" = String, Path)),
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn remove(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Json<Changed>, ApiError> {
    who.scope(&tenant)?;
    let v = s.store_as(&who).await?.remove_route(&tenant, &id).await?;
    Ok(Json(Changed { config_version: v }))
}

/// Attaches a plugin version to the route (or changes its attachment), in one transaction.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}", tag = "routes",
    params(("tenant" = String, Path), ("route" = String, Path), ("plugin" = String, Path)),
    request_body = AttachBody,
    responses((status = 200, body = PluginAttached), (status = "4XX", body = ErrorBody)))]
pub(super) async fn attach(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, route, plugin)): Path<(String, String, String)>,
    Json(b): Json<AttachBody>,
) -> Result<Json<PluginAttached>, ApiError> {
    who.scope(&tenant)?;
    let store = s.store_as(&who).await?;
    let version = match b.version {
        Some(v) => v,
        None => store.latest_plugin_version(&tenant, &plugin).await?,
    };
    // Parsed here rather than by serde, so a wrong entry is a 400 naming it like every other
    // invalid field.
    let allowed_outbound_hosts = b
        .allowed_outbound_hosts
        .iter()
        .map(|h| OutboundHost::parse(h))
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)?;
    let a = PluginAttachment {
        plugin,
        version,
        config: b.config,
        on_error: b.on_error,
        allowed_outbound_hosts,
        plugin_config: b.plugin_config,
        vm_config: b.vm_config,
    };
    let v = store
        .attach_plugin_at(&tenant, &route, a, b.position)
        .await?;
    Ok(Json(PluginAttached {
        version,
        config_version: v,
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/routes/{route}/plugins/{plugin}", tag = "routes",
    params(("tenant" = String, Path), ("route" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = Changed), (status = "4XX", body = ErrorBody)))]
pub(super) async fn detach(
    State(s): State<ApiState>,
    who: Principal,
    Path((tenant, route, plugin)): Path<(String, String, String)>,
) -> Result<Json<Changed>, ApiError> {
    who.scope(&tenant)?;
    let v = s
        .store_as(&who)
        .await?
        .detach_plugin(&tenant, &route, &plugin)
        .await?;
    Ok(Json(Changed { config_version: v }))
}
