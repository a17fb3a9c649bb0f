//! The path of one invocation, the same for every wire format:
//!
//! `address → route → authority (chain once, proofs completed from the store; rate limits;
//! promises; policies) → quotas → task → admit (subject, admission, input size, replay) → run
//! (memo, once-only, executor) → effects → finish (sign, store, with the chain kept by CID)`
//!
//! Everything before `run` can refuse ([`Refusal`], nothing signed); once a task has been admitted,
//! every outcome, failures included, is a signed receipt committed to the store before it is
//! returned. [`Gateway::handle`] reads top to bottom as that path.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::inbound::{Claim, Inbound, Replay};
use super::ledger::{Record, Running};
use super::quota::Quotas;
use super::{Answer, Gateway, REVOKE_COMMAND, Refusal, RefusalClass};
use crate::config::Limits;
use crate::config::Route;
use crate::promise::Resolved;
use crate::receipt::{Effects, Receipt, ReceiptBody, gateway_meta};
use crate::store::{Commit, IntentChange, Metered};
use crate::task::{EffectClass, ExecConfig, Task};
use crate::ucan::ValidationError;
use crate::ucan::validate::{Authorized, unix_now};

/// A task that passed every check and may run on its route.
pub(crate) struct Admitted<'r> {
    /// The route serving the task's command.
    pub route: &'r Route,
    /// The task.
    pub task: Task,
    /// Its replay key.
    pub replay: Replay,
    /// Until when the replay key must be kept.
    pub until: Option<i64>,
    /// Whether the key is claimed already (with a destructive task's intent); otherwise the commit
    /// of the receipt claims it.
    pub claimed: bool,
    /// Delegations of the chain to keep by CID with the receipt (proofs by reference).
    pub proofs: Vec<crate::store::StoredDelegation>,
    /// The chain's delegation quotas, checked before the run and charged as it goes.
    pub quotas: Quotas,
    /// Keeps the replay key in flight in this process until the answer is committed.
    _running: Running<'r>,
}

impl Gateway {
    /// The whole path for one invocation, counted in the metrics and logged once. `known` holds
    /// results produced earlier in the same request, by task id and invocation CID, for its
    /// promises; `wait` bounds how long the request waits for work that may outlive it.
    pub(crate) async fn handle(
        &self,
        inbound: &Inbound<'_>,
        known: &HashMap<Cid, Resolved>,
        wait: Option<Duration>,
    ) -> Result<Answer, Refusal> {
        let started = Instant::now();
        let result = self.handle_unobserved(inbound, known, wait, started).await;
        let outcome = match &result {
            Ok(answer) => answer.outcome(),
            Err(refusal) => refusal.name,
        };
        let label = self.label(&inbound.payload.cmd);
        let elapsed = started.elapsed();
        self.ledger.observe(label, outcome, elapsed);
        tracing::info!(
            invocation = %inbound.cid,
            issuer = %inbound.payload.iss,
            command = label,
            outcome,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "invocation"
        );
        result
    }

    /// The metric label of a command: offered commands by name, everything else as one `other`, so
    /// no caller can add a time series.
    pub(crate) fn label(&self, cmd: &crate::ucan::Command) -> &str {
        if cmd.as_str() == REVOKE_COMMAND {
            return REVOKE_COMMAND;
        }
        self.policy
            .route(cmd)
            .map_or("other", |route| route.command.as_str())
    }

    async fn handle_unobserved(
        &self,
        inbound: &Inbound<'_>,
        known: &HashMap<Cid, Resolved>,
        wait: Option<Duration>,
        started: Instant,
    ) -> Result<Answer, Refusal> {
        let now = unix_now();
        let payload = inbound.payload.as_ref();

        // address: the invocation must be meant for this gateway
        if payload.executor() != self.did {
            return Err(Refusal::forbidden(
                "InvalidAudience",
                format!(
                    "the invocation is addressed to {}, not to this gateway ({})",
                    payload.executor(),
                    self.did
                ),
            ));
        }

        // route (revocation is built in)
        if let Some(target) = self.revocation_target(inbound, now)? {
            return self.revoke(inbound, target, started).await;
        }
        let route = self
            .policy
            .route(&payload.cmd)
            .ok_or_else(|| inbound.wire.unknown_command(payload))?;
        if payload.exp.is_none() && !route.allow_no_expiry {
            return Err(Refusal::forbidden(
                "MissingExpiry",
                format!("invocations of {} must carry an expiry (exp)", payload.cmd),
            ));
        }

        // authority, checked once; the chain's policies apply to the values promises await.
        // Proofs cited by CID alone are completed from the store first (gather, step 2).
        let mut completed = None;
        let permit;
        let (auth, resolution) = match &inbound.claim {
            Claim::Ucan { invocation, proofs } => {
                let (all, missing) = self.complete_proofs(invocation, proofs, now).await?;
                let all: &HashMap<_, _> = completed.insert(all);
                // Nobody gets the gateway to wait on their behalf without authority: the chain is
                // checked before any promise is waited for.
                let chain =
                    self.authority
                        .check_chain(invocation, all, now)
                        .map_err(|refusal| match refusal.name {
                            "UnavailableProof" if !missing.is_empty() => {
                                Refusal::unavailable_proofs(missing)
                            }
                            _ => refusal,
                        })?;
                // rate limits, once the chain holds (nobody without authority can spend another's
                // budget) and before any promise is waited for
                permit = self.rate_limit(&payload.iss, &payload.sub)?;
                let resolution = self.resolve_promises(&payload.args, known).await?;
                let args = match &resolution {
                    Ok(Some(resolved)) => resolved,
                    _ => &payload.args,
                };
                // A promise that took the other branch has no value to check policies on; the
                // invocation is still answered (promise spec 3.2), and nothing runs.
                if resolution.is_ok() {
                    chain.check_policies(args)?;
                }
                (chain.authorized(args), resolution)
            }
            Claim::Checked { auth, .. } => {
                permit = self.rate_limit(&auth.invoker, &auth.subject)?;
                (auth.as_ref().clone(), Ok(None))
            }
        };
        // Held until the answer is committed: the invocation's tasks count as running till then.
        let _permit = permit;
        let proofs = completed.as_deref();
        // delegation quotas: one with any limit reached is refused before anything runs; the
        // invocation and what its run consumed are charged in the commit of the receipt
        let quotas = match proofs {
            Some(proofs) => self.quotas(&auth.chain, proofs, now).await?,
            None => Quotas::default(),
        };

        // task
        let mut task = Task::new(&auth, payload, route.effect)
            .map_err(|e| Refusal::malformed("InvalidConfig", e.to_string()))?;
        task.wait = wait;
        // A job the task hands to a backend is counted when it is recorded, and its run when it
        // ends, wherever that is; a destructive task's intent counts the job instead.
        task.journal_note = quotas.job_note(route.effect != EffectClass::Destructive);

        // admission, input size and replay
        let replay = Replay {
            // Resolved promises can make the arguments larger than the token: measure them.
            token_len: match &resolution {
                Ok(Some(_)) => usize::MAX,
                _ => inbound.replay.token_len,
            },
            ..inbound.replay
        };
        let mut admitted = self.admit(route, &auth, task, replay).await?;
        if let Some(proofs) = proofs {
            admitted.proofs = self.proofs_to_keep(&auth.chain, proofs);
        }
        admitted.quotas = quotas;

        // run: in flight until the receipt is stored, so a job it submits is its own to finish;
        // destructive work runs at most once per task, even across a crash
        let _inflight = self.jobs.enter(admitted.task.invocation);
        let once = match admitted.task.effect {
            EffectClass::Destructive if resolution.is_ok() => {
                self.claim_once(&mut admitted, started).await?
            }
            _ => None,
        };
        let (body, used) = match (once, resolution) {
            (Some(earlier), _) => (earlier, Metered::default()),
            (None, Ok(_)) => self.run(&admitted, started).await,
            (None, Err(mismatch)) => {
                let body = ReceiptBody {
                    ran: admitted.task.invocation,
                    task: admitted.task.id,
                    out: mismatch.to_out(),
                    fx: Effects::default(),
                    meta: gateway_meta(&route.backend, None, started.elapsed(), None),
                };
                (body, Metered::default())
            }
        };

        // effects: only with authority the invoker passed on, or the gateway's own
        let (body, cited) = self.authorize_effects(body, route, &auth, proofs, now);
        let mut answer = self.finish(&admitted, body, used).await?;
        answer.proofs = cited;
        Ok(answer)
    }

    /// The checks between authority and execution: the subject must be one the operator honours,
    /// the operator's admission rule must hold on the arguments, the input must fit the route, and
    /// the invocation must not have been seen before. Only an authorised invocation gets to claim a
    /// replay slot.
    async fn admit<'r>(
        &'r self,
        route: &'r Route,
        auth: &Authorized,
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
            if mismatch.exhausted {
                let message = format!("the operator's admission rule {mismatch}");
                return Err(ValidationError::new(mismatch.kind(), message).into());
            }
            return Err(Refusal::forbidden(
                "MatchError",
                format!(
                    "the operator's admission rule {} does not hold: {}",
                    mismatch.index, mismatch.statement
                ),
            ));
        }
        check_input_size(replay.token_len, &args, route.limits.max_input_bytes)?;

        let running = self.ledger.start(replay.key, task.invocation).await?;
        Ok(Admitted {
            route,
            task,
            replay,
            until: self.authority.seen_until(auth.expires),
            claimed: false,
            proofs: Vec::new(),
            quotas: Quotas::default(),
            _running: running,
        })
    }

    /// Runs an admitted task, or answers it from an earlier run of the same pure work, and gives the
    /// body of its receipt and what the run consumed (nothing, for an earlier run's answer). Never
    /// fails: a task that cannot run has an error outcome.
    async fn run(&self, admitted: &Admitted<'_>, started: Instant) -> (ReceiptBody, Metered) {
        let (route, task) = (admitted.route, &admitted.task);

        // memo: pure work already done is answered from the store
        if task.effect == EffectClass::Pure
            && let Some((prior, origin)) = self.ledger.memoized(task.work_id).await
        {
            let body = ReceiptBody {
                ran: task.invocation,
                task: task.id,
                out: prior.body.out,
                fx: prior.body.fx,
                meta: gateway_meta(&route.backend, None, started.elapsed(), Some(origin)),
            };
            return (body, Metered::default());
        }

        // executor (retried on host failures unless destructive)
        let limits = effective_limits(&route.limits, &task.config);
        let executed = self.execute(route, task, &limits).await;
        if let Some(fuel) = executed.fuel_used {
            self.ledger
                .metrics()
                .fuel
                .with_label_values(&[route.command.as_str()])
                .inc_by(fuel);
        }
        let used = super::quota::consumed(&executed);
        let body = ReceiptBody {
            ran: task.invocation,
            task: task.id,
            out: executed.out,
            fx: executed.effects,
            meta: gateway_meta(&route.backend, executed.fuel_used, started.elapsed(), None),
        };
        (body, used)
    }

    /// Signs the receipt, issues its effects, then commits in one transaction the receipt, the
    /// replay key (unless the intent claimed it), the intent's completion, the jobs its effects await,
    /// the end of the record of a job the task submitted, and the quota charges of the invocation
    /// and of what its run consumed (`used`).
    async fn finish(
        &self,
        admitted: &Admitted<'_>,
        body: ReceiptBody,
        used: Metered,
    ) -> Result<Answer, Refusal> {
        let task = &admitted.task;
        let record = Record {
            ran: task.invocation,
            task: task.id,
            work: Some(task.work_id),
            pure: task.effect == EffectClass::Pure,
        };
        let fx = body.fx.clone();
        let receipt = self.sign(body)?;
        let mut commit = Commit::default().with_receipt(record.stored(&receipt));
        let mut effects = Vec::with_capacity(fx.fork.len() + usize::from(fx.join.is_some()));
        for effect in fx.fork.iter().chain(fx.join.iter()) {
            let issued = effect
                .issue(receipt.cid(), &self.key)
                .map_err(receipt_failed)?;
            // An effect awaiting an external job is watched until the job ends; recorded with the
            // receipt pointing at it, so no stored receipt ever points at a job nobody watches.
            if let Some(job) = self.awaited_job(effect, &issued, task.journal_note.clone())? {
                commit = commit.with_job(job);
            }
            effects.push(issued);
        }
        if !admitted.claimed {
            commit = commit.with_claim(admitted.replay.key, admitted.until);
        }
        if task.effect == EffectClass::Destructive && !answered_earlier(&receipt) {
            commit = commit.with_intent(IntentChange::Complete {
                task: task.id,
                receipt: receipt.cid(),
            });
        }
        // The record written when the task's job was submitted is the receipt's to end.
        if self.jobs_of(&admitted.route.backend).is_some() {
            commit = commit.without_job(task.invocation);
        }
        // The chain that proved it, kept by CID for invocations to come.
        commit = commit.with_proofs(admitted.proofs.clone(), super::MAX_PROOFS_PER_ISSUER);
        commit.quotas = admitted.quotas.receipt_charges(used);
        self.ledger.commit(commit, task.invocation).await?;
        self.kept.mark(admitted.proofs.iter().map(|p| p.cid));
        Ok(Answer::new(receipt, effects))
    }

    /// Signs a receipt body with the gateway's key.
    fn sign(&self, body: ReceiptBody) -> Result<Receipt, Refusal> {
        Receipt::issue(body, &self.key).map_err(receipt_failed)
    }

    /// Signs a receipt and commits it with whatever else `commit` holds (for receipts with no
    /// effects to issue first).
    pub(crate) async fn commit(
        &self,
        record: Record,
        body: ReceiptBody,
        commit: Commit,
    ) -> Result<Receipt, Refusal> {
        let receipt = self.sign(body)?;
        let commit = Commit {
            receipt: Some(record.stored(&receipt)),
            ..commit
        };
        self.ledger.commit(commit, record.ran).await?;
        Ok(receipt)
    }
}

/// Whether `receipt` repeats the outcome of an earlier run rather than settling a run of its own.
fn answered_earlier(receipt: &Receipt) -> bool {
    matches!(
        receipt.body.meta.get(crate::receipt::META_MEMOIZED),
        Some(Ipld::Link(_))
    )
}

/// The gateway could not sign: a failure of its own, never of the caller.
pub(crate) fn receipt_failed(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(RefusalClass::Unavailable, "ReceiptFailed", e.to_string())
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
