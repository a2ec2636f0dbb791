//! The tenant self-service console at `/console/`: static files embedded in the binary (no
//! front-end build step: the script is ES modules the browser imports), same origin as the
//! `/v1` API it calls. A strict content security policy: only these files run, nothing is
//! framed, and nothing is cached.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../console/index.html");
/// The console's script modules, by name (ES modules, imported by `app.js`).
const SCRIPTS: [(&str, &str); 6] = [
    ("app.js", include_str!("../console/app.js")),
    ("ui.js", include_str!("../console/ui.js")),
    ("usage.js", include_str!("../console/usage.js")),
    ("routes.js", include_str!("../console/routes.js")),
    ("tenant.js", include_str!("../console/tenant.js")),
    ("operator.js", include_str!("../console/operator.js")),
];
const STYLE: &str = include_str!("../console/style.css");

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let scripts = SCRIPTS.iter().fold(Router::new(), |r, (name, body)| {
        r.route(
            &format!("/console/{name}"),
            get(move || async move { asset("text/javascript; charset=utf-8", body) }),
        )
    });
    scripts
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
