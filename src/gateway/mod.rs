//! The path of one invocation, in order:
//!
//! `decode → address → route → promises → authority → task → admission → replay → (memo) → executor
//! → effects → receipt → store`
//!
//! `Gateway::invoke_one` reads top to bottom as that path; each stage calls the module named for it
//! (`ucan::container`, `ucan::validate`, `task`, `exec`, `receipt`, `store`). Everything before the
//! executor can refuse ([`Refusal`], nothing signed); once a task has been admitted, every outcome,
//! failures included, is a signed receipt committed to the store before it is returned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Instant;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::config::{Limits, OperatorPolicy, Route};
use crate::did::SigningKey;
use crate::exec::{Executed, Executor};
use crate::ipld::dag_cbor_cid;
use crate::metrics::Metrics;
use crate::promise::Resolved;
use crate::receipt::{Effects, Out, Receipt, ReceiptBody, gateway_meta};
use crate::store::{Store, StoredReceipt};
use crate::task::{EffectClass, ExecConfig, Task};
use crate::ucan::container::Container;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::validate::{self, Options, Revocations, SignatureCache, unix_now};
use crate::ucan::{Delegation, Invocation};

mod answer;
mod effects;
mod pending;
mod pipeline;
mod revoke;
mod schedule;
mod ucanto;

pub use answer::{Answer, Refusal, RefusalClass, Reply, Summary};
pub use pending::PendingJob;

/// The built-in command for revoking a delegation.
pub const REVOKE_COMMAND: &str = "/ucan/revoke";

/// The gateway: its identity, the operator's policy, the store and the executors.
pub struct Gateway {
    key: SigningKey,
    did: String,
    policy: OperatorPolicy,
    store: Arc<dyn Store>,
    executors: HashMap<String, Arc<dyn Executor>>,
    revoked: RevokedSet,
    verified: VerifiedCache,
    metrics: Metrics,
    leeway: i64,
    /// The gateway itself, for work that outlives a request (effects it runs in the background).
    this: Weak<Gateway>,
    /// Woken whenever a receipt is stored, for requests waiting on one (promises, `follow=join`).
    stored: tokio::sync::Notify,
    /// The last state seen of each awaited job, for answers about receipts still to come.
    progress: pending::Progress,
    /// Invocations whose request is running, so the watcher leaves their jobs to them.
    inflight: pending::InFlight,
}

/// What replay protection keys on, and the size of the token that carried the task.
pub(crate) struct Replay {
    /// The CID of the signed payload (not of the token: a re-encoded signature must not replay).
    pub key: Cid,
    /// The length of the token carrying the task; bounds the size of its arguments.
    pub token_len: usize,
}

/// A task that passed every check and may run on its route.
pub(crate) struct Admitted<'r> {
    /// The route serving the task's command.
    pub route: &'r Route,
    /// The task.
    pub task: Task,
}

/// A decoded request: its invocations, in container order, and the delegations that came with them.
struct Request {
    invocations: Vec<Invocation>,
    proofs: HashMap<Cid, Delegation>,
}

/// The most invocations one request may carry.
pub const MAX_PIPELINE: usize = 16;

impl Gateway {
    /// A gateway signing with `key`, loading known revocations from `store`. Every route's backend
    /// must have an executor.
    pub async fn new(
        key: SigningKey,
        policy: OperatorPolicy,
        store: Arc<dyn Store>,
        executors: HashMap<String, Arc<dyn Executor>>,
        leeway: i64,
    ) -> Result<Arc<Self>, String> {
        for route in &policy.routes {
            if !executors.contains_key(&route.backend) {
                return Err(format!(
                    "route {} uses backend {:?}, which is not configured",
                    route.command, route.backend
                ));
            }
        }
        let revoked = store.revoked().await.map_err(|e| e.to_string())?;
        let did = key.did();
        Ok(Arc::new_cyclic(|this| Gateway {
            key,
            did,
            policy,
            store,
            executors,
            revoked: RevokedSet(RwLock::new(revoked.into_iter().collect())),
            verified: VerifiedCache::default(),
            metrics: Metrics::new(),
            leeway,
            this: this.clone(),
            stored: tokio::sync::Notify::new(),
            progress: pending::Progress::default(),
            inflight: pending::InFlight::default(),
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
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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
        Ok(self.store.health().await?)
    }

    /// A stored receipt by invocation CID, task id, receipt CID or alias.
    pub async fn receipt(&self, cid: &Cid) -> Result<Answer, Refusal> {
        let stored = self
            .store
            .receipt_by_any(*cid)
            .await?
            .ok_or_else(|| Refusal::not_found("NotFound", format!("no receipt for {cid}")))?;
        Ok(Answer::new(decode_stored(&stored)?, Vec::new()))
    }

    /// Runs the invocations of a container: one, or a pipeline of several linked by promises.
    pub async fn invoke(&self, container: &[u8], summary: &mut Summary) -> Result<Reply, Refusal> {
        self.invoke_with(container, summary, None).await
    }

    /// [`Gateway::invoke`], where the caller waits at most `wait` for work that may outlive the
    /// request (HTTP `Prefer: wait=N`) before taking a receipt that points at it.
    pub async fn invoke_with(
        &self,
        container: &[u8],
        summary: &mut Summary,
        wait: Option<std::time::Duration>,
    ) -> Result<Reply, Refusal> {
        let request = decode(container)?;
        if let [invocation] = request.invocations.as_slice() {
            summary.note(invocation);
            let answer = self
                .invoke_one(invocation, &request.proofs, &HashMap::new(), wait)
                .await?;
            if self.runs_effects(invocation) && !answer.effects.is_empty() {
                self.spawn_effects(&answer, &request.proofs);
            }
            return Ok(Reply {
                answers: vec![answer],
                refused: None,
            });
        }
        self.pipeline(request, summary, wait).await
    }

    /// The whole path for one invocation. `known` holds results produced earlier in the same
    /// request, by task id and invocation CID, for its promises; `wait` bounds how long the request
    /// waits for work that may outlive it.
    pub(crate) async fn invoke_one(
        &self,
        invocation: &Invocation,
        proofs: &HashMap<Cid, Delegation>,
        known: &HashMap<Cid, Resolved>,
        wait: Option<std::time::Duration>,
    ) -> Result<Answer, Refusal> {
        let started = Instant::now();
        let now = unix_now();
        let inv = &invocation.payload;

        // address: the invocation must be meant for this gateway
        if inv.executor() != self.did {
            return Err(Refusal::forbidden(
                "InvalidAudience",
                format!(
                    "the invocation is addressed to {}, not to this gateway ({})",
                    inv.executor(),
                    self.did
                ),
            ));
        }

        // route (revocation is built in)
        if inv.cmd.as_str() == REVOKE_COMMAND {
            return self.revoke(invocation, proofs, now, started).await;
        }
        let route = self.policy.route(&inv.cmd).ok_or_else(|| {
            Refusal::not_found(
                "UnknownCommand",
                format!("this gateway does not offer {}", inv.cmd),
            )
        })?;
        if inv.exp.is_none() && !route.allow_no_expiry {
            return Err(Refusal::forbidden(
                "MissingExpiry",
                format!("invocations of {} must carry an expiry (exp)", inv.cmd),
            ));
        }

        // promises: the chain's policies apply to the values awaited, not to the promises
        let resolution = self
            .resolve_promises(invocation, proofs, known, now)
            .await?;

        // authority
        let args = match &resolution {
            Ok(Some(resolved)) => resolved,
            _ => &inv.args,
        };
        let auth = match self.authorize(invocation, args, proofs, now) {
            // A promise that took the other branch has no value to check policies on; the
            // invocation is still answered (promise spec 3.2) if nothing else is wrong.
            Err(e) if resolution.is_err() && e.name == "MatchError" => {
                self.authorize_unchecked(invocation, proofs, now)?
            }
            other => other?,
        };

        // task
        let mut task = Task::new(&auth, inv, route.effect)
            .map_err(|e| Refusal::malformed("InvalidConfig", e.to_string()))?;
        task.wait = wait;

        // admission, input size and replay, then the run
        let admitted = self
            .admit(
                route,
                &auth,
                task,
                Replay {
                    key: dag_cbor_cid(invocation.envelope.signed_bytes()),
                    // Resolved promises can make the arguments larger than the token: measure them.
                    token_len: match &resolution {
                        Ok(Some(_)) => usize::MAX,
                        _ => invocation.bytes().len(),
                    },
                },
            )
            .await?;
        // In flight until the receipt is stored: a job it submits is its own to finish till then.
        let _inflight = self.inflight.enter(admitted.task.invocation);
        let body = match resolution {
            Ok(_) => self.run(&admitted, started).await,
            Err(mismatch) => ReceiptBody {
                ran: admitted.task.invocation,
                task: admitted.task.id,
                out: mismatch.to_out(),
                fx: Effects::default(),
                meta: gateway_meta(&route.backend, None, started.elapsed(), None),
            },
        };

        // effects: only with authority the invoker passed on, or the gateway's own
        let (body, cited) = self.authorize_effects(body, route, &auth, proofs, now);
        let mut answer = self.finish(&admitted.task, body).await?;
        answer.proofs = cited;
        Ok(answer)
    }

    /// The checks between authority and execution, shared by every wire format: the subject must be
    /// one the operator honours, the operator's admission rule must hold on the arguments, the input
    /// must fit the route, and the invocation must not have been seen before. Only an authorised
    /// invocation gets to consume a replay slot.
    pub(crate) async fn admit<'r>(
        &self,
        route: &'r Route,
        auth: &validate::Authorized,
        task: Task,
        replay: Replay,
    ) -> Result<Admitted<'r>, Refusal> {
        if !self.policy.honours(&auth.subject, &self.did) {
            return Err(Refusal::forbidden(
                "InvalidSubject",
                format!("this gateway does not act for the subject {}", auth.subject),
            ));
        }

        // admission: the operator's own policy, on top of the chain's
        let args = Ipld::Map(task.input.clone());
        if let Err(mismatch) = route.admission.check(&args) {
            return Err(Refusal::forbidden(
                "MatchError",
                format!(
                    "the operator's admission rule {} does not hold: {}",
                    mismatch.index, mismatch.statement
                ),
            ));
        }
        check_input_size(replay.token_len, &args, route.limits.max_input_bytes)?;

        let seen_until = auth.expires.map(|exp| exp.saturating_add(self.leeway));
        if !self
            .timed("mark_seen", self.store.mark_seen(replay.key, seen_until))
            .await?
        {
            return Err(Refusal::new(
                RefusalClass::Replayed,
                "Replayed",
                format!("invocation {} was already received", task.invocation),
            ));
        }
        Ok(Admitted { route, task })
    }

    /// Runs an admitted task, or answers it from an earlier run of the same pure work, and gives the
    /// body of its receipt. Never fails: a task that cannot run has an error outcome.
    pub(crate) async fn run(&self, admitted: &Admitted<'_>, started: Instant) -> ReceiptBody {
        let Admitted { route, task } = admitted;

        // memo: pure work already done is answered from the store
        if task.effect == EffectClass::Pure
            && let Ok(Some(earlier)) = self
                .timed("memoized", self.store.memoized(task.work_id))
                .await
            && let Ok(prior) = Receipt::decode(&earlier.bytes)
        {
            // Point at the receipt of the run that actually happened, not at another memoized answer.
            let origin = match prior.body.meta.get(crate::receipt::META_MEMOIZED) {
                Some(Ipld::Link(cid)) => *cid,
                _ => earlier.receipt_cid,
            };
            return ReceiptBody {
                ran: task.invocation,
                task: task.id,
                out: prior.body.out,
                fx: prior.body.fx,
                meta: gateway_meta(&route.backend, None, started.elapsed(), Some(origin)),
            };
        }

        // destructive work runs at most once per task, even across a crash
        if task.effect == EffectClass::Destructive
            && let Some(body) = self.claim_once(route, task, started).await
        {
            return body;
        }

        // executor (retried on host failures unless destructive)
        let limits = effective_limits(&route.limits, &task.config);
        let executed = self.execute(route, task, &limits).await;
        if let Some(fuel) = executed.fuel_used {
            self.metrics
                .fuel
                .with_label_values(&[task.operation.as_str()])
                .inc_by(fuel);
        }
        ReceiptBody {
            ran: task.invocation,
            task: task.id,
            out: executed.out,
            fx: executed.effects,
            meta: gateway_meta(&route.backend, executed.fuel_used, started.elapsed(), None),
        }
    }

    /// Checks the proof chain on `args` (the invocation's, promises resolved), remembering
    /// verified signatures and consulting revocations.
    fn authorize(
        &self,
        invocation: &Invocation,
        args: &BTreeMap<String, Ipld>,
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<validate::Authorized, Refusal> {
        Ok(validate::validate_resolved(
            invocation,
            args,
            proofs,
            self.options(now),
            &self.revoked,
            &self.verified,
        )?)
    }

    /// The chain checked as for [`Gateway::authorize`] but without its policies, which cannot be
    /// evaluated while a promise has no value: before waiting for promises, and to answer a branch
    /// mismatch, which runs nothing.
    fn authorize_unchecked(
        &self,
        invocation: &Invocation,
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<validate::Authorized, Refusal> {
        Ok(validate::validate_ignoring_policies(
            invocation,
            proofs,
            self.options(now),
            &self.revoked,
            &self.verified,
        )?)
    }

    fn options(&self, now: i64) -> Options {
        Options {
            now,
            leeway: self.leeway,
        }
    }

    /// Signs the receipt, issues its effects (recording any that await an external job), then
    /// commits the receipt.
    pub(crate) async fn finish(&self, task: &Task, body: ReceiptBody) -> Result<Answer, Refusal> {
        let record = Record {
            ran: task.invocation,
            task: task.id,
            work: Some(task.work_id),
            pure: task.effect == EffectClass::Pure,
        };
        let fx = body.fx.clone();
        let receipt = self.sign(body)?;
        let mut effects = Vec::with_capacity(fx.fork.len() + usize::from(fx.join.is_some()));
        for effect in fx.fork.iter().chain(fx.join.iter()) {
            let issued = effect.issue(receipt.cid(), &self.key).map_err(|e| {
                Refusal::new(RefusalClass::Unavailable, "ReceiptFailed", e.to_string())
            })?;
            // An effect awaiting an external job is watched until the job ends; recorded before the
            // receipt pointing at it, so no stored receipt ever points at a job nobody watches.
            self.track(effect, &issued).await?;
            effects.push(issued);
        }
        self.store_receipt(record, &receipt).await?;
        if task.effect == EffectClass::Destructive {
            self.settle_once(task, &receipt).await;
        }
        self.forget_submitted(task).await;
        Ok(Answer::new(receipt, effects))
    }

    /// Signs a receipt body with the gateway's key.
    fn sign(&self, body: ReceiptBody) -> Result<Receipt, Refusal> {
        Receipt::issue(body, &self.key)
            .map_err(|e| Refusal::new(RefusalClass::Unavailable, "ReceiptFailed", e.to_string()))
    }

    /// Stores a signed receipt under `record`'s keys, waking anyone waiting for receipts.
    async fn store_receipt(&self, record: Record, receipt: &Receipt) -> Result<(), Refusal> {
        let stored = StoredReceipt {
            receipt_cid: receipt.cid(),
            ran: record.ran,
            task_id: record.task,
            work_id: record.work,
            ok: receipt.body.out.is_ok(),
            pure: record.pure,
            created_at: unix_now(),
            bytes: receipt.bytes().to_vec(),
        };
        self.timed("put_receipt", self.store.put_receipt(&stored))
            .await?;
        self.stored.notify_waiters();
        Ok(())
    }

    /// Signs a receipt and stores it (for receipts with no effects to issue first).
    async fn commit(&self, record: Record, body: ReceiptBody) -> Result<Receipt, Refusal> {
        let receipt = self.sign(body)?;
        self.store_receipt(record, &receipt).await?;
        Ok(receipt)
    }

    /// Awaits a store call, recording its latency.
    async fn timed<T>(&self, op: &str, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .store_latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// What a stored receipt is filed under.
struct Record {
    /// The invocation answered.
    ran: Cid,
    /// Its task id.
    task: Cid,
    /// Its work id, when its result may ever be reused.
    work: Option<Cid>,
    /// Whether the task is pure (a memoization source when it succeeded).
    pure: bool,
}

/// A stored receipt, decoded.
fn decode_stored(stored: &StoredReceipt) -> Result<Receipt, Refusal> {
    Receipt::decode(&stored.bytes).map_err(|e| {
        Refusal::new(
            RefusalClass::Unavailable,
            "StoreUnavailable",
            format!("stored receipt unreadable: {e}"),
        )
    })
}

/// Reads a container holding one or more invocations (at most [`MAX_PIPELINE`]) and any number
/// of delegations.
fn decode(container: &[u8]) -> Result<Request, Refusal> {
    let container = Container::decode(container)
        .map_err(|e| Refusal::malformed("MalformedContainer", e.to_string()))?;
    let mut invocations = Vec::new();
    let mut proofs = HashMap::new();
    for token in &container.tokens {
        let envelope = Envelope::decode(token).map_err(|e| {
            Refusal::new(
                RefusalClass::Unauthenticated,
                "MalformedToken",
                e.to_string(),
            )
        })?;
        match envelope.kind {
            Kind::Invocation => {
                if invocations.len() == MAX_PIPELINE {
                    return Err(Refusal::malformed(
                        "MalformedContainer",
                        format!("a request may hold at most {MAX_PIPELINE} invocations"),
                    ));
                }
                invocations.push(Invocation::from_envelope(envelope)?);
            }
            Kind::Delegation => {
                let dlg = Delegation::from_envelope(envelope)?;
                proofs.insert(dlg.cid(), dlg);
            }
        }
    }
    if invocations.is_empty() {
        return Err(Refusal::malformed(
            "MalformedContainer",
            "the container holds no invocation",
        ));
    }
    Ok(Request {
        invocations,
        proofs,
    })
}

/// Refuses arguments larger than the route allows. The token's own size bounds the arguments', so
/// the encoding is only measured when the token is larger than the limit.
fn check_input_size(token_len: usize, args: &Ipld, max: usize) -> Result<(), Refusal> {
    if token_len <= max {
        return Ok(());
    }
    let size = crate::ipld::to_dag_cbor(args)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > max {
        return Err(Refusal::too_large(
            "InputTooLarge",
            format!("the arguments are {size} bytes; this command accepts at most {max}"),
        ));
    }
    Ok(())
}

/// The route's limits, lowered where the invoker asked for less.
fn effective_limits(route: &Limits, asked: &ExecConfig) -> Limits {
    let mut wanted = *route;
    if let Some(fuel) = asked.fuel {
        wanted.fuel = fuel;
    }
    if let Some(memory) = asked.memory_bytes {
        wanted.memory_bytes = memory;
    }
    if let Some(timeout) = asked.timeout {
        wanted.timeout = timeout;
    }
    route.min(&wanted)
}

/// Revoked delegations, loaded from the store at startup and grown as revocations arrive.
struct RevokedSet(RwLock<HashSet<Cid>>);

impl Revocations for RevokedSet {
    fn is_revoked(&self, delegation: &Cid) -> bool {
        self.0
            .read()
            .map(|set| set.contains(delegation))
            .unwrap_or(true)
    }
}

/// Tokens whose signatures already verified. A CID binds the token's bytes, so a verified signature
/// stays verified; popular delegations are then checked once, not on every request. Bounded: when
/// full it is simply emptied (cheap, and the next requests re-fill it).
#[derive(Default)]
struct VerifiedCache(Mutex<HashSet<Cid>>);

const VERIFIED_CACHE_MAX: usize = 65_536;

impl SignatureCache for VerifiedCache {
    fn is_verified(&self, token: &Cid) -> bool {
        self.0
            .lock()
            .map(|set| set.contains(token))
            .unwrap_or(false)
    }

    fn mark_verified(&self, token: &Cid) {
        if let Ok(mut set) = self.0.lock() {
            if set.len() >= VERIFIED_CACHE_MAX {
                set.clear();
            }
            set.insert(*token);
        }
    }
}

impl Executed {
    /// An error outcome with no fuel used and no effects.
    pub fn failed(name: &str, message: impl Into<String>) -> Self {
        Executed {
            out: Out::error(name, message),
            fuel_used: None,
            effects: Effects::default(),
        }
    }
}
