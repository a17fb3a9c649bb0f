//! `GET /receipts/{cid}/events`: a workflow as Server-Sent Events. The receipt under `cid`, then
//! each receipt of its effects as it is stored (the gateway's [`Workflow`]), as `receipt` events
//! whose `id` is the receipt's CID; then one `end` event saying why the stream ends (`settled`,
//! `shutdown`, `lifetime`, `limit`, `missing` or `unavailable`). Heartbeats (SSE comments) keep a
//! quiet stream open through proxies.
//!
//! With `?wait=N` a receipt not stored yet is waited for, up to `N` seconds, on an open stream
//! (heartbeats included) rather than answered 404: a client can start following before it sends
//! the invocation, as `follow=join` lets a long poll do.
//!
//! The stream is written by a task of its own into a small channel; the task holds the stream's
//! permit (the cap on open streams, waiting included), and stops when the client goes away, the
//! workflow settles, the gateway starts draining, or [`STREAM_LIFETIME`] passes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cid::Cid;

use super::edge::{Edge, busy};
use super::error::ApiError;
use super::settings::STREAM_LIFETIME;
use super::{MAX_WAIT_SECS, invalid_query};
use crate::gateway::{Gateway, RefusalClass, Step, Workflow};

/// Events buffered per stream before the writer waits for the client to read.
const BUFFER: usize = 16;

/// Query of `GET /receipts/{cid}/events`: `wait`, seconds (at most [`MAX_WAIT_SECS`]) to wait
/// for a receipt not stored yet; without it such a CID is 404.
#[derive(Debug, serde::Deserialize)]
pub(super) struct EventsQuery {
    wait: Option<u64>,
}

/// Where a stream starts.
enum Start {
    /// The receipt is stored: its workflow.
    Found(Workflow),
    /// Not stored yet: wait for it until the deadline.
    Awaited {
        cid: Cid,
        resume: Option<Cid>,
        until: tokio::time::Instant,
    },
}

/// The handler.
pub(super) async fn events(
    State(edge): State<Edge>,
    cid: Result<Path<String>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let cid = match super::path_cid(cid) {
        Ok(cid) => cid,
        Err(response) => return *response,
    };
    let wait = match query {
        Ok(Query(EventsQuery { wait })) => wait.unwrap_or(0),
        Err(rejection) => return invalid_query(rejection.body_text()),
    };
    if wait > MAX_WAIT_SECS {
        return invalid_query(format!(
            "wait={wait} is longer than the longest wait, {MAX_WAIT_SECS} seconds"
        ));
    }
    let Ok(permit) = Arc::clone(&edge.streams).try_acquire_owned() else {
        return busy(
            "TooManyStreams",
            format!(
                "{} event streams are already open; try again shortly",
                edge.settings.max_streams
            ),
        );
    };
    // The last receipt the client received, when it reconnects.
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Cid::try_from(v.trim()).ok());
    let start = match edge.gateway.workflow(&cid, resume).await {
        Ok(flow) => Start::Found(flow),
        Err(refusal) if refusal.class == RefusalClass::NotFound && wait > 0 => Start::Awaited {
            cid,
            resume,
            until: tokio::time::Instant::now() + Duration::from_secs(wait),
        },
        Err(refusal) => return ApiError(refusal).into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(BUFFER);
    let (gateway, drain) = (Arc::clone(&edge.gateway), edge.drain.clone());
    tokio::spawn(async move {
        let _permit = permit;
        write(&gateway, start, &tx, &drain).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(edge.settings.stream_heartbeat))
        .into_response()
}

/// Writes the workflow's receipts into `tx` until it settles or the stream must end.
async fn write(
    gateway: &Gateway,
    start: Start,
    tx: &tokio::sync::mpsc::Sender<Event>,
    drain: &super::Drain,
) {
    // The wait for the first receipt counts towards the lifetime (it is far shorter).
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
    let mut flow = match start {
        Start::Found(flow) => flow,
        Start::Awaited { cid, resume, until } => {
            let found = tokio::select! {
                found = gateway.workflow_once_stored(&cid, resume, until) => found,
                () = drain.started() => return end(tx, "shutdown").await,
                () = tx.closed() => return,
            };
            match found {
                Ok(flow) => flow,
                Err(refusal) if refusal.class == RefusalClass::NotFound => {
                    return end(tx, "missing").await;
                }
                Err(_) => return end(tx, "unavailable").await,
            }
        }
    };
    let reason = loop {
        let step = tokio::select! {
            step = gateway.next_in_workflow(&mut flow) => step,
            () = drain.started() => break "shutdown",
            () = tokio::time::sleep_until(deadline) => break "lifetime",
            () = tx.closed() => return,
        };
        let receipt = match step {
            Ok(Step::Receipt(receipt)) => receipt,
            Ok(Step::Settled) => break "settled",
            Ok(Step::Limit) => break "limit",
            // The store failed; the client may resume later from the last receipt it has.
            Err(_) => break "unavailable",
        };
        let event = Event::default()
            .event("receipt")
            .id(receipt.cid().to_string())
            .data(receipt.to_json().to_string());
        if tx.send(event).await.is_err() {
            return;
        }
    };
    end(tx, reason).await;
}

/// The stream's last event: why it ends.
async fn end(tx: &tokio::sync::mpsc::Sender<Event>, reason: &str) {
    let end = Event::default()
        .event("end")
        .data(serde_json::json!({ "reason": reason }).to_string());
    let _ = tx.send(end).await;
}
