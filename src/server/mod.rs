//! The HTTP edge: the only module that knows axum. It turns requests into calls on the
//! [`Gateway`] and answers back; everything between is the gateway's.
//!
//! - `POST /`: a UCAN container (body, or `Authorization: Bearer` with an empty body) → receipt container;
//!   with `content-type: application/vnd.ipld.car`, a ucanto message → ucanto report (`ucanto.rs`).
//! - `GET /receipts/{cid}`: a stored receipt by invocation CID, task id or receipt CID (`follow=join`
//!   follows the join chain); `202` with the job's state while the receipt of an awaited job is still
//!   to come.
//! - `GET /`: service description; `GET /health`; `GET /metrics`; `GET /openapi.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cid::Cid;

use crate::gateway::{Gateway, Refusal, Reply, Summary};
use crate::ucan::container::{Container, Format};

pub mod error;
mod ucanto;
mod ui;

use error::ApiError;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Builds the router over a gateway.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/", get(describe).post(invoke))
        .route("/receipts/{cid}", get(receipt))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(ui::router())
        .with_state(gateway)
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
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

/// The request body, refused past the operator's `max_body`.
async fn read_body(gateway: &Gateway, body: Body) -> Result<Bytes, Refusal> {
    axum::body::to_bytes(body, gateway.max_body_bytes())
        .await
        .map_err(|_| {
            Refusal::too_large(
                "PayloadTooLarge",
                format!("the body exceeds {} bytes", gateway.max_body_bytes()),
            )
        })
}

async fn invoke(State(gateway): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    match ucanto::select(&headers) {
        Ok(ucanto::Transport::Ucanto) => return ucanto::invoke(gateway, body).await,
        Ok(ucanto::Transport::Container) => {}
        Err(response) => return *response,
    }
    let started = Instant::now();
    let mut summary = Summary::default();
    let result = async {
        let body = read_body(&gateway, body).await?;
        let container = request_container(&headers, body)?;
        let answer = gateway
            .invoke_with(&container, &mut summary, prefer_wait(&headers))
            .await?;
        Ok::<_, Refusal>((answer, Container::format_of(&container)))
    }
    .await;

    let outcome = match &result {
        Ok((answer, _)) => answer.outcome(),
        Err(refusal) => refusal.name,
    };
    let command = summary.command.as_deref().unwrap_or("-");
    let elapsed = started.elapsed();
    gateway
        .metrics()
        .invocations
        .with_label_values(&[command, outcome])
        .inc();
    gateway
        .metrics()
        .latency
        .with_label_values(&[command])
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        invocation = summary
            .invocation
            .map(|c| c.to_string())
            .as_deref()
            .unwrap_or("-"),
        issuer = summary.issuer.as_deref().unwrap_or("-"),
        command,
        outcome,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "invocation"
    );

    match result {
        Ok((answer, format)) => {
            answer_response(&answer, wants_json(&headers), format.unwrap_or(Format::Raw))
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
    State(gateway): State<Arc<Gateway>>,
    Path(cid): Path<String>,
    Query(query): Query<ReceiptQuery>,
    headers: HeaderMap,
) -> Response {
    let Ok(cid) = Cid::try_from(cid.as_str()) else {
        return ApiError(Refusal::malformed(
            "MalformedCid",
            format!("{cid:?} is not a CID"),
        ))
        .into_response();
    };
    let found = match query.follow.as_deref() {
        None => gateway.receipt(&cid).await,
        Some("join") => {
            let wait = Duration::from_secs(query.wait.unwrap_or(30).min(120));
            gateway.receipt_following_joins(&cid, wait).await
        }
        Some(other) => Err(Refusal::malformed(
            "MalformedQuery",
            format!("follow={other:?} is not understood (only follow=join)"),
        )),
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

async fn describe(State(gateway): State<Arc<Gateway>>) -> Response {
    axum::Json(gateway.describe()).into_response()
}

async fn health(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.health().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable" })),
        )
            .into_response(),
    }
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        gateway.metrics().render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}
