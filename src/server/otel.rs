//! OpenTelemetry at the HTTP edge (cargo feature `otel`): each request span gets its OpenTelemetry
//! name (`GET /receipts/{cid}`) and kind, and continues the caller's trace when the request
//! carries a W3C `traceparent`. The exporter itself is set up with logging (`cli/logging.rs`).

use axum::extract::Request;
use axum::http::HeaderMap;
use opentelemetry::propagation::Extractor;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Request headers as a propagation carrier.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Names the request span for OpenTelemetry and links it to the caller's trace, if any.
pub fn enter_request(span: &tracing::Span, request: &Request, route: &str) {
    span.record("otel.name", format!("{} {route}", request.method()));
    span.record("otel.kind", "server");
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    let _ = span.set_parent(parent);
}
