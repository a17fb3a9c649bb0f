//! Turning the policy's `[[bacalhau]]` backends into executors: secrets read from the environment
//! variables the policy names, compute caps gathered from the routes forwarding to each backend, and
//! a startup probe of each network (alive, version, nodes) for the log, and the readiness check
//! `/readyz` runs on each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::config::{BackendAuth, OperatorPolicy};
use crate::exec::bacalhau::{
    Auth, BacalhauExecutor, BacalhauSettings, Client, ClientConfig, Defaults,
};
use crate::server::probes::{CHECK_TIMEOUT, Check};
use crate::store::Store;

/// How often a request polls a job while it waits for it.
const REQUEST_POLL: Duration = Duration::from_millis(100);

/// One executor per configured Bacalhau backend, keyed by backend name; effects are issued by
/// `gateway_did`, submitted jobs recorded in `store`.
pub fn executors(
    policy: &OperatorPolicy,
    gateway_did: &str,
    store: &Arc<dyn Store>,
) -> anyhow::Result<Vec<(String, Arc<BacalhauExecutor>)>> {
    let mut out = Vec::new();
    for backend in &policy.bacalhau {
        let env = |name: &str| {
            std::env::var(name).with_context(|| {
                format!(
                    "backend {}: environment variable {name} is not set",
                    backend.name
                )
            })
        };
        let auth = match &backend.auth {
            BackendAuth::None => Auth::None,
            BackendAuth::ApiKeyEnv(var) => Auth::Bearer(env(var)?),
            BackendAuth::Basic {
                username,
                password_env,
            } => Auth::Basic {
                username: username.clone(),
                password: env(password_env)?,
            },
        };
        let compute = policy
            .routes
            .iter()
            .filter(|r| r.backend == backend.name)
            .map(|r| (r.command.to_string(), r.compute))
            .collect::<HashMap<_, _>>();
        let settings = BacalhauSettings {
            name: backend.name.clone(),
            client: ClientConfig::new(backend.url.clone(), auth),
            wait: backend.wait,
            poll: REQUEST_POLL,
            defaults: Defaults {
                publisher: backend.publisher.clone(),
                ..Defaults::default()
            },
        };
        let executor =
            BacalhauExecutor::new(settings, compute, gateway_did.to_owned(), Arc::clone(store))
                .map_err(|e| anyhow!("backend {}: {e}", backend.name))?;
        spawn_probe(backend.name.clone(), executor.client().clone());
        out.push((backend.name.clone(), Arc::new(executor)));
    }
    Ok(out)
}

/// `/readyz`'s check of one network: its agent answers one request within the check timeout (no
/// retries: the probe is asked again a few seconds later anyway).
pub fn readiness_check(name: &str, client: &Client) -> (String, Check) {
    let client = client.clone();
    let check: Check = Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            client
                .alive_once(CHECK_TIMEOUT)
                .await
                .map_err(|e| e.to_string())
        })
    });
    (format!("bacalhau:{name}"), check)
}

/// Logs whether a network answers, its version and its node count, once at startup. A network that
/// is down does not stop the gateway: its tasks get `BackendUnavailable` receipts until it is back.
fn spawn_probe(name: String, client: Client) {
    tokio::spawn(async move {
        match client.alive().await {
            Ok(status) => {
                let version = client
                    .version()
                    .await
                    .ok()
                    .and_then(|v| v["GitVersion"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned());
                let nodes = client.nodes().await.map(|n| n.len());
                tracing::info!(backend = %name, url = %client.url(), %status, %version, nodes = ?nodes.ok(), "bacalhau network answers");
            }
            Err(e) => {
                tracing::warn!(backend = %name, url = %client.url(), error = %e, "bacalhau network unreachable at startup");
            }
        }
    });
}
