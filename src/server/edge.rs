//! What every request passes through before its handler, outermost first:
//!
//! 1. [`observe`]: the request id (`x-request-id` taken if sane, else generated, echoed back), a
//!    `request` span holding it so every log line of the request carries it, one access log line
//!    per request, and the HTTP metrics (labelled by route pattern, never by raw path).
//! 2. CORS (tower-http), so refusals below still reach a browser page that can read them.
//! 3. [`limits`]: while draining, a quick 503 for anything but probes and long polls; a cap on
//!    requests in flight and another on long polls, both refusing with 503 and `Retry-After`
//!    rather than queueing without bound; and the request timeout, which long polls skip (their
//!    own `wait` bounds them) and event streams skip too (their handler holds a permit of
//!    [`Shared::streams`] for as long as the stream is open, and ends it on drain).

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, FromRef, MatchedPath, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use super::error::edge_error;
use super::listen::Drain;
use super::probes::Readiness;
use super::settings::{CorsOrigins, HttpSettings, RETRY_AFTER_SECS};
use crate::gateway::Gateway;

/// The request id header, accepted from the caller and always echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header naming the refusal that stopped a pipeline.
pub const REFUSED: HeaderName = HeaderName::from_static("ucan-gateway-refused");
/// The longest request id accepted from a caller.
const MAX_REQUEST_ID: usize = 128;
/// The longest path written into a log line.
const MAX_LOGGED_PATH: usize = 256;

/// Everything the router's handlers and layers share (cheap to clone).
#[derive(Clone)]
pub struct Edge(Arc<Shared>);

/// What an [`Edge`] holds.
pub struct Shared {
    /// The gateway requests are for.
    pub gateway: Arc<Gateway>,
    /// The edge's settings.
    pub settings: HttpSettings,
    /// Whether the gateway is shutting down.
    pub drain: Drain,
    /// The readiness checks of `/readyz`.
    pub readiness: Readiness,
    /// Event streams open: a permit is held by each stream's body, not by the request.
    pub streams: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
}

impl Edge {
    /// An edge over `gateway` with `settings`, shutting down when `drain` says so.
    pub fn new(
        gateway: Arc<Gateway>,
        settings: HttpSettings,
        drain: Drain,
        readiness: Readiness,
    ) -> Self {
        Edge(Arc::new(Shared {
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            long_polls: Arc::new(Semaphore::new(settings.max_long_polls)),
            streams: Arc::new(Semaphore::new(settings.max_streams)),
            gateway,
            settings,
            drain,
            readiness,
        }))
    }
}

impl std::ops::Deref for Edge {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl FromRef<Edge> for Arc<Gateway> {
    fn from_ref(edge: &Edge) -> Self {
        Arc::clone(&edge.gateway)
    }
}

/// Wraps `router` in the layers of the module docs.
pub fn layered(router: Router, edge: &Edge) -> Router {
    let router = router.layer(axum::middleware::from_fn_with_state(edge.clone(), limits));
    let router = match cors(&edge.settings.cors) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(axum::middleware::from_fn_with_state(edge.clone(), observe))
}

/// CORS for browser apps: the headers a UCAN or ucanto client sends (`Authorization` for a bearer
/// container, `Content-Type` such as `application/vnd.ipld.car`, `Prefer`, `Last-Event-ID`), and
/// the gateway's own response headers made readable. No credentials: authority is in the tokens, not in cookies.
fn cors(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
        CorsOrigins::None => return None,
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::HEAD])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("prefer"),
                REQUEST_ID,
                // A page resuming an event stream with fetch names the last receipt it has.
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([REFUSED, header::RETRY_AFTER, REQUEST_ID, header::ACCEPT])
            .max_age(Duration::from_secs(3600)),
    )
}

/// The request id: the caller's when it is 1–128 visible ASCII characters, else a fresh one.
fn request_id(request: &Request) -> HeaderValue {
    let given = request.headers().get(&REQUEST_ID).filter(|v| {
        let b = v.as_bytes();
        !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| (0x21..=0x7e).contains(c))
    });
    match given {
        Some(id) => id.clone(),
        None => fresh_request_id(),
    }
}

/// 32 hex digits: a keyed hash of a process-wide counter. The key is drawn from the OS once, so
/// ids neither repeat in practice nor tell a caller how many requests came before; drawing 16
/// random bytes from the OS for every request cost more than the rest of the request's edge.
fn fresh_request_id() -> HeaderValue {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let key = KEY.get_or_init(RandomState::new);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut hex = [0u8; 32];
    for (half, digits) in (0u8..).zip(hex.chunks_mut(16)) {
        let word = key.hash_one((n, half));
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = DIGITS[((word >> (60 - 4 * i)) & 0xf) as usize];
        }
    }
    HeaderValue::from_bytes(&hex).expect("hex is a valid header value")
}

/// Method names as metric label values: the few the API uses, every other as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Request id, span, access log and HTTP metrics.
async fn observe(State(edge): State<Edge>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    request.headers_mut().insert(REQUEST_ID, id.clone());
    // Route patterns come from the router, never from the caller: bounded label values.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = request.method().clone();
    let path: String = request.uri().path().chars().take(MAX_LOGGED_PATH).collect();
    let remote = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %method,
        path = %path,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    #[cfg(feature = "otel")]
    super::otel::enter_request(&span, &request, &route);

    let metrics = edge.gateway.metrics();
    let in_flight = Counted::new(&metrics.http_in_flight);
    let mut response = next.run(request).instrument(span.clone()).await;
    drop(in_flight);
    response.headers_mut().insert(REQUEST_ID, id);

    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let method = method_label(&method);
    tracing::info!(
        parent: &span,
        status,
        route = %route,
        remote = %remote,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    metrics
        .http_requests
        .with_label_values(&[&route, method, &status.to_string()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[&route, method])
        .observe(elapsed.as_secs_f64());
    response
}

/// One request in the in-flight gauge, taken out again however the request ends (a caller that
/// goes away drops the handler's future half-way).
struct Counted<'a>(&'a prometheus::IntGauge);

impl<'a> Counted<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How a request is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Probes and metrics: never limited, answered while draining.
    Probe,
    /// `GET /receipts/{cid}?follow=join`: bounded by its `wait` and the long-poll cap.
    LongPoll,
    /// `GET /receipts/{cid}/events`: bounded by the stream cap, held by its body.
    Stream,
    /// Everything else: the in-flight cap and the request timeout.
    Ordinary,
}

fn kind(request: &Request) -> Kind {
    let path = request.uri().path();
    if matches!(path, "/livez" | "/readyz" | "/health" | "/metrics") {
        return Kind::Probe;
    }
    if path.starts_with("/receipts/") && path.ends_with("/events") {
        return Kind::Stream;
    }
    if path.starts_with("/receipts/") {
        let query = Query::<std::collections::HashMap<String, String>>::try_from_uri(request.uri());
        if query.is_ok_and(|q| q.get("follow").is_some_and(|f| f == "join")) {
            return Kind::LongPoll;
        }
    }
    Kind::Ordinary
}

/// A 503 telling the client when to come back.
pub(crate) fn busy(name: &'static str, message: String) -> Response {
    let mut response = edge_error(StatusCode::SERVICE_UNAVAILABLE, name, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// Drain gate, concurrency caps and the request timeout.
async fn limits(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    match kind(&request) {
        Kind::Probe => next.run(request).await,
        Kind::LongPoll => {
            let Ok(_permit) = Arc::clone(&edge.long_polls).try_acquire_owned() else {
                return busy(
                    "TooManyLongPolls",
                    format!(
                        "{} long polls are already waiting; try again shortly",
                        edge.settings.max_long_polls
                    ),
                );
            };
            next.run(request).await
        }
        Kind::Stream if !edge.drain.is_draining() => next.run(request).await,
        Kind::Stream | Kind::Ordinary => {
            if edge.drain.is_draining() {
                let mut response = busy(
                    "Draining",
                    "the gateway is shutting down; send this to another instance".to_owned(),
                );
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return response;
            }
            let Ok(_permit) = Arc::clone(&edge.in_flight).try_acquire_owned() else {
                return busy(
                    "Overloaded",
                    format!(
                        "{} requests are already being answered; try again shortly",
                        edge.settings.max_in_flight
                    ),
                );
            };
            let limit = edge.settings.request_timeout;
            match tokio::time::timeout(limit, next.run(request)).await {
                Ok(response) => response,
                Err(_) => {
                    tracing::warn!(
                        timeout_secs = limit.as_secs_f64(),
                        "request timed out; its work was abandoned"
                    );
                    edge_error(
                        StatusCode::GATEWAY_TIMEOUT,
                        "RequestTimeout",
                        format!(
                            "no answer within {} s; a receipt may still appear at GET /receipts/{{cid}}",
                            limit.as_secs_f64()
                        ),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, id: Option<&[u8]>) -> Request {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(id) = id {
            builder = builder.header(REQUEST_ID, HeaderValue::from_bytes(id).unwrap());
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn a_sane_request_id_is_kept_and_any_other_replaced() {
        let kept = request_id(&request("/", Some(b"abc-123_XYZ.~")));
        assert_eq!(kept, "abc-123_XYZ.~");
        let long = vec![b'a'; MAX_REQUEST_ID + 1];
        for bad in [&b"has space"[..], b"", &long, b"tab\there", &[0xc3, 0xa9]] {
            let id = request_id(&request("/", Some(bad)));
            assert_ne!(id.as_bytes(), bad);
            assert_eq!(id.len(), 32, "{id:?}");
        }
        let fresh: std::collections::HashSet<_> = (0..10_000)
            .map(|_| request_id(&request("/", None)))
            .collect();
        assert_eq!(fresh.len(), 10_000, "generated ids differ");
        for id in &fresh {
            assert_eq!(id.len(), 32, "{id:?}");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit), "{id:?}");
        }
    }

    #[test]
    fn requests_are_classified() {
        assert_eq!(kind(&request("/livez", None)), Kind::Probe);
        assert_eq!(kind(&request("/metrics", None)), Kind::Probe);
        assert_eq!(
            kind(&request("/receipts/bafy?follow=join&wait=5", None)),
            Kind::LongPoll
        );
        assert_eq!(
            kind(&request("/receipts/bafy?follow=%6Aoin", None)),
            Kind::LongPoll
        );
        assert_eq!(kind(&request("/receipts/bafy", None)), Kind::Ordinary);
        assert_eq!(kind(&request("/", None)), Kind::Ordinary);
    }
}
