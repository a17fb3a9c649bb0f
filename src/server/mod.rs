//! The HTTP edge: the only module that knows axum. It turns requests into calls on the
//! [`Gateway`] and answers back; everything between is the gateway's.
//!
//! - `POST /`: a UCAN container (body, or `Authorization: Bearer` with an empty body) → receipt container;
//!   with `content-type: application/vnd.ipld.car`, a ucanto message → ucanto report (`ucanto.rs`).
//! - `GET /receipts/{cid}/events`: the receipt and those of its effects as they are stored, as
//!   Server-Sent Events (`events.rs`).
//! - `POST /delegations`: a container of delegations kept for invocations to cite by CID.
//! - `GET /receipts/{cid}`: a stored receipt by invocation CID, task id or receipt CID (`follow=join`
//!   follows the join chain); `202` with the job's state while the receipt of an awaited job is still
//!   to come.
//! - `GET /`: service description; `GET /livez`, `GET /readyz` (`/health`), `GET /metrics`,
//!   `GET /openapi.json`.
//!
//! Around the handlers: `listen.rs` (the accept loop: timeouts, drain), `edge.rs` (request ids,
//! access log, CORS, concurrency caps, request timeout), `probes.rs`, `settings.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use cid::Cid;

use crate::gateway::{Gateway, Refusal, Reply};
use crate::ucan::container::{Container, Format};

pub mod edge;
pub mod error;
mod events;
pub mod listen;
#[cfg(feature = "otel")]
pub mod otel;
pub mod probes;
pub mod settings;
mod ucanto;
mod ui;

pub use edge::Edge;
pub use listen::{Drain, serve};
pub use settings::{CorsOrigins, HttpSettings};

use error::{ApiError, edge_error};

/// The OpenAPI document of this API, as written in `docs/openapi.json`.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The longest `wait` of `GET /receipts/{cid}?follow=join` and of `GET /receipts/{cid}/events`,
/// in seconds.
pub const MAX_WAIT_SECS: u64 = 120;
/// The `wait` of a `follow=join` that names none, in seconds.
pub const DEFAULT_WAIT_SECS: u64 = 30;

/// Every path served, the methods it takes, and its handlers. The router is built from this list
/// only, and a test holds the list to `docs/openapi.json` both ways and probes the router for
/// each method.
fn routes() -> Vec<(&'static str, &'static [&'static str], MethodRouter<Edge>)> {
    let own: Vec<(&'static str, &'static [&'static str], MethodRouter<Edge>)> = vec![
        ("/", &["GET", "POST"], get(describe).post(invoke)),
        ("/receipts/{cid}", &["GET"], get(receipt)),
        ("/receipts/{cid}/events", &["GET"], get(events::events)),
        ("/delegations", &["POST"], post(delegations)),
        ("/livez", &["GET"], get(probes::livez)),
        ("/readyz", &["GET"], get(probes::readyz)),
        ("/health", &["GET"], get(probes::readyz)),
        ("/metrics", &["GET"], get(metrics)),
        ("/openapi.json", &["GET"], get(openapi)),
    ];
    own.into_iter().chain(ui::routes()).collect()
}

/// The paths served and their methods.
pub fn served() -> Vec<(&'static str, &'static [&'static str])> {
    routes().into_iter().map(|(p, m, _)| (p, m)).collect()
}

/// The router over a gateway with default edge settings and the store as the only readiness
/// check (for tests and embedding; `serve` uses [`app`]).
pub fn router(gateway: Arc<Gateway>) -> Router {
    let readiness = probes::Readiness::new(vec![probes::store_check(&gateway)]);
    app(Edge::new(
        gateway,
        HttpSettings::default(),
        Drain::new(),
        readiness,
    ))
}

/// The router with every edge layer (`edge.rs`).
pub fn app(edge: Edge) -> Router {
    let mut router = Router::new();
    for (path, _, endpoint) in routes() {
        router = router.route(path, endpoint);
    }
    let router = router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(edge.clone());
    edge::layered(router, &edge)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// `Prefer: wait=N` (RFC 7240): how many seconds the client will wait for a result.
fn prefer_wait(headers: &HeaderMap) -> Option<std::time::Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .find_map(|p| p.trim().strip_prefix("wait=")?.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"))
}

/// The container from the body, or from `Authorization: Bearer …` when the body is empty.
fn request_container(headers: &HeaderMap, body: Bytes) -> Result<Bytes, Refusal> {
    if !body.is_empty() {
        return Ok(body);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match bearer {
        Some(token) if !token.is_empty() => Ok(Bytes::copy_from_slice(token.as_bytes())),
        _ => Err(Refusal::malformed(
            "MalformedContainer",
            "send a UCAN container as the body, or in an Authorization: Bearer header",
        )),
    }
}

/// The request body, refused past the operator's `max_body`, or when it stops arriving.
async fn read_body(gateway: &Gateway, body: Body) -> Result<Bytes, Refusal> {
    axum::body::to_bytes(body, gateway.max_body_bytes())
        .await
        .map_err(|e| {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.is::<tower_http::timeout::TimeoutError>() {
                    return Refusal::malformed(
                        "BodyTimeout",
                        "the request body stopped arriving before it was complete",
                    );
                }
                if s.is::<http_body_util::LengthLimitError>() {
                    return Refusal::too_large(
                        "PayloadTooLarge",
                        format!("the body exceeds {} bytes", gateway.max_body_bytes()),
                    );
                }
                source = s.source();
            }
            Refusal::malformed("MalformedBody", "the request body could not be read")
        })
}

async fn invoke(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    match ucanto::select(&headers) {
        Ok(ucanto::Transport::Ucanto) => return ucanto::invoke(gateway, body).await,
        Ok(ucanto::Transport::Container) => {}
        Err(response) => return *response,
    }
    let result = async {
        let body = read_body(&gateway, body).await?;
        let container = request_container(&headers, body)?;
        let answer = gateway.invoke(&container, prefer_wait(&headers)).await?;
        Ok::<_, Refusal>((answer, Container::format_of(&container)))
    }
    .await;

    match result {
        Ok((answer, format)) => {
            answer_response(&answer, wants_json(&headers), format.unwrap_or(Format::Raw))
        }
        Err(refusal) => ApiError(refusal).into_response(),
    }
}

/// `POST /delegations`: a container of delegations (body, or `Authorization: Bearer`) → the CIDs
/// kept, `{"kept": [cid, …]}`.
async fn delegations(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body = read_body(&gateway, body).await?;
        let container = request_container(&headers, body)?;
        gateway.keep_delegations(&container).await
    }
    .await;
    match result {
        Ok(kept) => {
            let kept: Vec<String> = kept.iter().map(Cid::to_string).collect();
            axum::Json(serde_json::json!({ "kept": kept })).into_response()
        }
        Err(refusal) => ApiError(refusal).into_response(),
    }
}

/// The receipts and any effect invocations, as a container in `format` or as JSON for people. A
/// pipeline stopped by a refusal names it in the `ucan-gateway-refused` header too.
fn answer_response(reply: &Reply, json: bool, format: Format) -> Response {
    let refused = reply
        .refused
        .as_ref()
        .and_then(|(_, refusal)| HeaderValue::from_str(refusal.name).ok());
    let mut response = if json {
        axum::Json(reply.to_json()).into_response()
    } else {
        container_response(reply, format)
    };
    if let Some(name) = refused {
        response.headers_mut().insert("ucan-gateway-refused", name);
    }
    response
}

fn container_response(reply: &Reply, format: Format) -> Response {
    let bytes = reply.to_container().encode(format);
    let content_type = if matches!(format, Format::Raw | Format::RawGzip) {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        bytes,
    )
        .into_response()
}

/// Query of `GET /receipts/{cid}`: `follow=join` follows the join chain to its end, waiting up to
/// `wait` seconds (default 30, at most 120) for receipts still to come.
#[derive(Debug, serde::Deserialize)]
struct ReceiptQuery {
    follow: Option<String>,
    wait: Option<u64>,
}

async fn receipt(
    State(edge): State<Edge>,
    cid: Result<Path<String>, PathRejection>,
    query: Result<Query<ReceiptQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let gateway = &edge.gateway;
    let cid = match path_cid(cid) {
        Ok(cid) => cid,
        Err(response) => return *response,
    };
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return invalid_query(rejection.body_text()),
    };
    let wait = match query.wait {
        None => DEFAULT_WAIT_SECS,
        Some(w) if w <= MAX_WAIT_SECS => w,
        Some(w) => {
            return invalid_query(format!(
                "wait={w} is longer than the longest wait, {MAX_WAIT_SECS} seconds"
            ));
        }
    };
    let found = match query.follow.as_deref() {
        None => gateway.receipt(&cid).await,
        Some("join") => {
            let waiting = gateway.receipt_following_joins(&cid, Duration::from_secs(wait));
            // Draining ends the wait: the answer is what is known now.
            tokio::select! {
                found = waiting => found,
                () = edge.drain.started() => gateway.receipt_following_joins(&cid, Duration::ZERO).await,
            }
        }
        Some(other) => {
            return invalid_query(format!(
                "follow={:?} is not understood (only follow=join)",
                other.chars().take(64).collect::<String>()
            ));
        }
    };
    match found {
        Ok(answer) => answer_response(&Reply::from(answer), wants_json(&headers), Format::Raw),
        Err(refusal) if refusal.class == crate::gateway::RefusalClass::NotFound => {
            // A receipt still to come: 202 with the job's last known state.
            match gateway.pending_job(&cid).await {
                Some(job) => (StatusCode::ACCEPTED, axum::Json(job.to_json())).into_response(),
                None => ApiError(refusal).into_response(),
            }
        }
        Err(refusal) => ApiError(refusal).into_response(),
    }
}

/// The CID in a `{cid}` path segment, or the `MalformedCid` answer.
fn path_cid(cid: Result<Path<String>, PathRejection>) -> Result<Cid, Box<Response>> {
    let malformed = |message: String| {
        Box::new(ApiError(Refusal::malformed("MalformedCid", message)).into_response())
    };
    let Ok(Path(cid)) = cid else {
        return Err(malformed("the path segment is not a CID".to_owned()));
    };
    Cid::try_from(cid.as_str()).map_err(|_| {
        malformed(format!(
            "{:?} is not a CID",
            cid.chars().take(128).collect::<String>()
        ))
    })
}

fn invalid_query(message: impl Into<String>) -> Response {
    edge_error(StatusCode::BAD_REQUEST, "InvalidQuery", message)
}

async fn describe(State(gateway): State<Arc<Gateway>>) -> Response {
    axum::Json(gateway.describe()).into_response()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        gateway.metrics().render(),
    )
        .into_response()
}

/// The OpenAPI document with `info.version` set to this build's version.
fn openapi_document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc: serde_json::Value =
            serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON (a test checks)");
        doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
        doc.to_string()
    })
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        openapi_document(),
    )
        .into_response()
}
