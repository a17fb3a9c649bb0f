//! Turning the policy's `[[bacalhau]]` backends into executors: secrets read from the environment
//! variables the policy names, compute caps gathered from the routes forwarding to each backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::config::{BackendAuth, OperatorPolicy};
use crate::exec::Executor;
use crate::exec::bacalhau::{Auth, BacalhauExecutor, BacalhauSettings, ClientConfig, Defaults};

/// How often a request polls a job while it waits for it.
const REQUEST_POLL: Duration = Duration::from_millis(100);

/// One executor per configured Bacalhau backend, keyed by backend name; effects are issued by
/// `gateway_did`.
pub fn executors(
    policy: &OperatorPolicy,
    gateway_did: &str,
) -> anyhow::Result<Vec<(String, Arc<dyn Executor>)>> {
    let mut out: Vec<(String, Arc<dyn Executor>)> = Vec::new();
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
        let executor = BacalhauExecutor::new(settings, compute, gateway_did.to_owned())
            .map_err(|e| anyhow!("backend {}: {e}", backend.name))?;
        out.push((backend.name.clone(), Arc::new(executor)));
    }
    Ok(out)
}
