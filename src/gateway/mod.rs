//! The gateway: the path every invocation takes, whatever wire format carried it, and the few owned
//! parts it needs.
//!
//! - [`path`]: `address → route → authority → rate → task → admit → run → effects → finish`, the one path
//!   ([`Gateway::handle`]); [`inbound`] is what each wire format hands it.
//! - wire formats: [`container`] (UCAN 1.0 containers) and [`ucanto`] (ucanto messages over CAR),
//!   each a decoder into [`inbound::Inbound`]s and an encoder of its answers.
//! - parts, each owning its state: [`authority`] (revocations, verified signatures, clock leeway),
//!   [`ledger`] (the store, receipt notifications, metrics, replay protection), [`jobs`] (work that
//!   outlives a request: in-flight invocations, job progress, the watcher).
//! - [`sharing`]: keeping up with other processes sharing the store (revocations they accept).
//! - around the path: [`rate`] (operator rate limits per invoker and root issuer), [`quota`]
//!   (delegation quotas in `meta`, counted in the receipt's commit), [`proofs`]
//!   (proofs by reference: chains completed from the store, the proofs of accepted invocations
//!   kept, uploads), [`revoke`] (revocation, once for every wire format), [`pipeline`] (several
//!   invocations in one request, ordered by their promises), [`promises`], [`effects`] (effect
//!   authority and effects the gateway runs itself), [`schedule`] (retries and run-once by effect
//!   class), [`answer`] (answers and refusals), [`workflow`] (following a receipt's effects as
//!   they are stored, for event streams).
//!
//! Everything before the executor can refuse ([`Refusal`], nothing signed); once a task has been
//! admitted, every outcome, failures included, is a signed receipt committed to the store before it
//! is returned.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use cid::Cid;

use crate::config::OperatorPolicy;
use crate::did::SigningKey;
use crate::exec::Executor;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

mod answer;
mod authority;
mod container;
mod effects;
mod host;
mod inbound;
mod jobs;
mod ledger;
mod path;
mod pipeline;
mod promises;
mod proofs;
mod quota;
mod rate;
mod revoke;
mod schedule;
mod sharing;
mod ucanto;
mod workflow;

pub use answer::{Answer, Refusal, RefusalClass, Reply};
pub use host::host;
pub use jobs::PendingJob;
pub use proofs::MAX_PROOFS_PER_ISSUER;
pub use quota::{QUOTA_META, Quota, Resource};
pub use sharing::{DEFAULT_JOB_LEASE, DEFAULT_STORE_REFRESH, Sharing};
pub use workflow::{MAX_WORKFLOW_RECEIPTS, Step, Workflow};

use authority::Authority;
use jobs::Jobs;
use ledger::Ledger;

/// The built-in command for revoking a delegation.
pub const REVOKE_COMMAND: &str = "/ucan/revoke";

/// The most invocations one request may carry.
pub const MAX_PIPELINE: usize = 16;

/// Why a gateway could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A route names a backend no executor was given for.
    #[error("route {command} uses backend {backend:?}, which is not configured")]
    MissingBackend {
        /// The route's command.
        command: String,
        /// The backend it names.
        backend: String,
    },
    /// The store could not be read at startup.
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

/// The gateway: its identity, the operator's policy, the executors, and its owned parts.
pub struct Gateway {
    key: SigningKey,
    did: String,
    policy: OperatorPolicy,
    executors: HashMap<String, Arc<dyn Executor>>,
    authority: Authority,
    ledger: Ledger,
    jobs: Jobs,
    sharing: Sharing,
    /// Delegations known to be kept in the store (proofs by reference).
    kept: proofs::Kept,
    /// The operator's rate limits, per replica.
    rate: rate::Limiter,
    /// The gateway itself, for work that outlives a request (effects it runs in the background).
    this: Weak<Gateway>,
}

impl Gateway {
    /// A gateway signing with `key`, loading known revocations from `store`. Every route's backend
    /// must have an executor.
    pub async fn new(
        key: SigningKey,
        policy: OperatorPolicy,
        store: Arc<dyn Store>,
        executors: HashMap<String, Arc<dyn Executor>>,
        leeway: i64,
    ) -> Result<Arc<Self>, GatewayError> {
        Self::shared(key, policy, store, executors, leeway, Sharing::default()).await
    }

    /// [`Gateway::new`], keeping up with other processes sharing `store` as `sharing` says.
    pub async fn shared(
        key: SigningKey,
        policy: OperatorPolicy,
        store: Arc<dyn Store>,
        executors: HashMap<String, Arc<dyn Executor>>,
        leeway: i64,
        sharing: Sharing,
    ) -> Result<Arc<Self>, GatewayError> {
        if let Some(route) = policy
            .routes
            .iter()
            .find(|r| !executors.contains_key(&r.backend))
        {
            return Err(GatewayError::MissingBackend {
                command: route.command.to_string(),
                backend: route.backend.clone(),
            });
        }
        let revoked = store.revocations_since(0).await?;
        let did = key.did();
        let authority = Authority::new(did.clone(), leeway);
        authority.learn(revoked);
        Ok(Arc::new_cyclic(|this| Gateway {
            authority,
            ledger: Ledger::new(store, sharing.refresh),
            jobs: Jobs::default(),
            sharing,
            kept: proofs::Kept::default(),
            rate: rate::Limiter::new(policy.rate_limits),
            key,
            did,
            policy,
            executors,
            this: this.clone(),
        }))
    }

    /// The gateway's DID (it signs receipts with it; invocations must be addressed to it).
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The largest request body accepted.
    pub fn max_body_bytes(&self) -> usize {
        self.policy.max_body_bytes
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &Metrics {
        self.ledger.metrics()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.ledger.store()
    }

    /// What this gateway is and offers, for `GET /`.
    pub fn describe(&self) -> serde_json::Value {
        let commands: Vec<serde_json::Value> = self
            .policy
            .routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "command": r.command.as_str(),
                    "backend": r.backend,
                    "effect": r.effect.as_str(),
                    "allow_no_expiry": r.allow_no_expiry,
                    "limits": {
                        "fuel": r.limits.fuel,
                        "memory_bytes": r.limits.memory_bytes,
                        "timeout_ms": u64::try_from(r.limits.timeout.as_millis()).unwrap_or(u64::MAX),
                        "max_input_bytes": r.limits.max_input_bytes,
                        "max_output_bytes": r.limits.max_output_bytes,
                    },
                    "arguments": crate::exec::schema::argument_schema(&r.backend, r.command.as_str()),
                })
            })
            .chain(std::iter::once(serde_json::json!({
                "command": REVOKE_COMMAND,
                "backend": "built-in",
                "arguments": crate::exec::schema::revoke_schema(),
            })))
            .collect();
        let subjects: Vec<String> = self.policy.subjects.iter().map(|s| s.to_string()).collect();
        serde_json::json!({
            "name": "ucan-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "did": self.did,
            "subjects": subjects,
            "max_body_bytes": self.max_body_bytes(),
            "commands": commands,
        })
    }

    /// Whether the store answers.
    pub async fn health(&self) -> Result<(), Refusal> {
        Ok(self.ledger.store().health().await?)
    }

    /// How to follow the jobs of `backend`, if its jobs outlive a request.
    fn jobs_of(&self, backend: &str) -> Option<&dyn crate::exec::Jobs> {
        self.executors.get(backend).and_then(|e| e.jobs())
    }

    /// Whether `cmd` is the await command of a backend whose jobs outlive a request: the gateway's
    /// own bookkeeping, answered by its watcher, never run as a request.
    fn awaits_job(&self, cmd: &str) -> bool {
        self.executors
            .values()
            .filter_map(|e| e.jobs())
            .any(|jobs| jobs.await_command() == cmd)
    }

    /// A stored receipt by invocation CID, task id, receipt CID or alias.
    pub async fn receipt(&self, cid: &Cid) -> Result<Answer, Refusal> {
        let receipt = self
            .ledger
            .receipt(*cid)
            .await?
            .ok_or_else(|| Refusal::not_found("NotFound", format!("no receipt for {cid}")))?;
        Ok(Answer::new(receipt, Vec::new()))
    }
}
