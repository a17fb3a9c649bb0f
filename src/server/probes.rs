//! Probes: `/livez` (the process answers), `/readyz` (it can do its work: the store answers, every
//! configured compute network answers, and it is not draining), and `/health`, kept as an alias
//! of `/readyz`.
//!
//! Checks other than draining are cached for [`CACHE_FOR`], and only one refresh runs at a time, so
//! a supervisor probing every second (or a crowd of callers) costs one store query and one cheap
//! request per network every few seconds. Failing checks are named in the answer, their details
//! only in the log (they may hold internal addresses).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use super::edge::Edge;

/// How long check results are reused.
pub const CACHE_FOR: Duration = Duration::from_secs(2);
/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One readiness check: `Ok` when the dependency answers, else why not (for the log).
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Each check's name and whether it passed.
type Results = Vec<(String, bool)>;

/// The checks behind `/readyz`, with their cached results.
pub struct Readiness {
    checks: Vec<(String, Check)>,
    cached: tokio::sync::Mutex<Option<(Instant, Results)>>,
}

impl Readiness {
    /// Readiness made of `checks`, each under its name.
    pub fn new(checks: Vec<(String, Check)>) -> Self {
        Readiness {
            checks,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The result of each check, fresh or at most [`CACHE_FOR`] old.
    async fn results(&self) -> Results {
        let mut cached = self.cached.lock().await;
        if let Some((at, results)) = cached.as_ref()
            && at.elapsed() < CACHE_FOR
        {
            return results.clone();
        }
        let runs = self.checks.iter().map(|(name, check)| async move {
            let ok = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(check = %name, error = %e, "readiness check failed");
                    false
                }
                Err(_) => {
                    tracing::warn!(check = %name, "readiness check timed out");
                    false
                }
            };
            (name.clone(), ok)
        });
        let results = futures_util::future::join_all(runs).await;
        *cached = Some((Instant::now(), results.clone()));
        results
    }
}

/// `GET /livez`: the process is up and answering.
pub async fn livez() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /readyz` (and `/health`): 200 when every check passes and the gateway is not draining.
pub async fn readyz(State(edge): State<Edge>) -> Response {
    if edge.drain.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "draining" })),
        )
            .into_response();
    }
    let results = edge.readiness.results().await;
    let ready = results.iter().all(|(_, ok)| *ok);
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, ok)| (name, (if ok { "ok" } else { "unavailable" }).into()))
        .collect();
    let (status, word) = if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        axum::Json(serde_json::json!({ "status": word, "checks": checks })),
    )
        .into_response()
}

/// The store check of a gateway: a trivial query.
pub fn store_check(gateway: &Arc<crate::gateway::Gateway>) -> (String, Check) {
    let gateway = Arc::clone(gateway);
    let check: Check = Arc::new(move || {
        let gateway = Arc::clone(&gateway);
        Box::pin(async move { gateway.health().await.map_err(|r| r.message) })
    });
    ("store".to_owned(), check)
}
