//! `GET /receipts/{cid}/events`: a workflow as Server-Sent Events. The receipt under `cid`, then
//! each receipt of its effects as it is stored (the gateway's [`Workflow`]), as `receipt` events
//! whose `id` is the receipt's CID; then one `end` event saying why the stream ends (`settled`,
//! `shutdown`, `lifetime`, `limit` or `unavailable`). Heartbeats (SSE comments) keep a quiet
//! stream open through proxies.
//!
//! The stream is written by a task of its own into a small channel; the task holds the stream's
//! permit (the cap on open streams), and stops when the client goes away, the workflow settles,
//! the gateway starts draining, or [`STREAM_LIFETIME`] passes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cid::Cid;

use super::edge::{Edge, busy};
use super::error::ApiError;
use super::settings::STREAM_LIFETIME;
use crate::gateway::{Gateway, Step, Workflow};

/// Events buffered per stream before the writer waits for the client to read.
const BUFFER: usize = 16;

/// The handler.
pub(super) async fn events(
    State(edge): State<Edge>,
    cid: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let cid = match super::path_cid(cid) {
        Ok(cid) => cid,
        Err(response) => return *response,
    };
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
    let flow = match edge.gateway.workflow(&cid, resume).await {
        Ok(flow) => flow,
        Err(refusal) => return ApiError(refusal).into_response(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(BUFFER);
    let (gateway, drain) = (Arc::clone(&edge.gateway), edge.drain.clone());
    tokio::spawn(async move {
        let _permit = permit;
        write(&gateway, flow, &tx, &drain).await;
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
    mut flow: Workflow,
    tx: &tokio::sync::mpsc::Sender<Event>,
    drain: &super::Drain,
) {
    let deadline = tokio::time::Instant::now() + STREAM_LIFETIME;
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
    let end = Event::default()
        .event("end")
        .data(serde_json::json!({ "reason": reason }).to_string());
    let _ = tx.send(end).await;
}
