//! Logging and OpenTelemetry tracing set-up. With an OTLP endpoint (config or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) spans are exported over OTLP/HTTP (JSON) in batches; without
//! one, no exporter exists and spans only feed the log filter.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;

/// The exporter, for `flush` from a process that exits without unwinding main.
static PROVIDER: std::sync::OnceLock<SdkTracerProvider> = std::sync::OnceLock::new();

/// Sends the spans still batched (a process about to `exit` does not drop its guard).
pub fn flush() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.force_flush();
    }
}

/// Keeps the exporter alive; flushes on drop.
pub struct TracingGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TracingGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Target of Wharf's trace spans (request, plugins, plugin, host_call). They are `debug` level and
/// only the OTLP layer enables them: with no endpoint they are disabled call sites, costing
/// next to nothing on the request path.
pub const TRACE_TARGET: &str = "wharf::trace";

/// Installs the global subscriber: logs to stderr filtered by `WHARF_LOG` (default info), plus an
/// OTLP span exporter when `otlp_endpoint` is set (a base URL; `/v1/traces` is appended).
pub fn init(otlp_endpoint: Option<&str>) -> TracingGuard {
    let filter = EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let provider = otlp_endpoint.and_then(|endpoint| {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url)
            .build()
        {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name("wharf").build())
                    .build(),
            ),
            Err(e) => {
                eprintln!("wharf: OpenTelemetry export disabled: {e}");
                None
            }
        }
    });
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("wharf"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target(TRACE_TARGET, tracing::Level::DEBUG),
            )
    });
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .try_init();
    if let Some(p) = &provider {
        let _ = PROVIDER.set(p.clone());
    }
    TracingGuard { provider }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the W3C `traceparent` in `headers`, when there is one.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&Headers(headers));
        let _ = span.set_parent(cx);
    }
}

struct Collect(Vec<(String, String)>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The `traceparent`/`tracestate` headers naming `span` as the parent, when it is being exported.
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = Collect(Vec::new());
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}
