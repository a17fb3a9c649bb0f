//! Effects: further work a task asks for, issued by the gateway as invocations whose `cause` is the
//! receipt that requested them.
//!
//! Authority is never invented. The gateway signs an effect only when it can prove the right to:
//! - with authority the invoker passed on: the request carried a delegation from the invoker to the
//!   gateway covering the effect's command and subject, so the effect's proofs are the invoker's
//!   chain followed by that delegation, and the whole chain validates like any invocation; or
//! - in its own name, for commands whose route says `gateway_effects = true`: the subject is the
//!   gateway and no proof is needed.
//!
//! An effect with neither is refused in the receipt (`UnauthorizedEffect`), never dropped quietly.
//! The gateway's own bookkeeping effects (a backend's await command on the gateway's own subject,
//! such as `/bacalhau/job/await`) need no more.
//!
//! Routes with `run_effects = true` have the gateway run their receipts' effects itself, in the
//! background, through the same path as a request. The tree is bounded: an effect deeper than
//! `effects.max_depth`, beyond `effects.max_fanout` forks of one receipt, or repeating the task of
//! an ancestor (a cycle) gets an error receipt instead of running.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::ledger::Record;
use super::{Answer, Gateway, RefusalClass};
use crate::config::Route;
use crate::ipld::dag_cbor_cid;
use crate::receipt::{Effect, Effects, Out, ReceiptBody, gateway_meta};
use crate::store::Commit;
use crate::ucan::validate::Authorized;
use crate::ucan::{Command, Delegation, Invocation};

/// An effect the gateway is to run: the invocation, how deep below the request it is, the task ids
/// above it (to cut cycles), and the error to record instead of running it, if any.
struct Queued {
    invocation: Invocation,
    depth: usize,
    ancestors: Vec<Cid>,
    cut: Option<Out>,
}

impl Gateway {
    /// Gives every effect in `body` the authority it needs, or replaces the outcome with an
    /// `UnauthorizedEffect` error when one has none. Returns the body and the delegations the effects
    /// cite that came with the request (so clients can submit the effects as they are).
    pub(super) fn authorize_effects(
        &self,
        mut body: ReceiptBody,
        route: &Route,
        auth: &Authorized,
        proofs: Option<&HashMap<Cid, Delegation>>,
        now: i64,
    ) -> (ReceiptBody, Vec<Delegation>) {
        if body.fx.is_empty() {
            return (body, Vec::new());
        }
        let none = HashMap::new();
        let proofs = proofs.unwrap_or(&none);
        let mut cited = Vec::new();
        let mut fx = Effects::default();
        let requested = body.fx.fork.iter().map(|e| ("fork", e));
        let requested = requested.chain(body.fx.join.iter().map(|e| ("join", e)));
        for (i, (kind, effect)) in requested.enumerate() {
            match self.authorize_effect(effect, route, auth, proofs, now) {
                Ok((authorized, delegation)) => {
                    if let Some(d) = delegation
                        && !cited.iter().any(|c: &Delegation| c.cid() == d.cid())
                    {
                        cited.push(d.clone());
                    }
                    if kind == "join" {
                        fx.join = Some(authorized);
                    } else {
                        fx.fork.push(authorized);
                    }
                }
                Err(reason) => {
                    let message = format!(
                        "effect {i} ({kind}, {} on {}) has no authority: {reason}",
                        effect.cmd, effect.sub
                    );
                    let details = BTreeMap::from([("effect".to_owned(), effect.to_ipld())]);
                    body.out = Out::error_with("UnauthorizedEffect", message, details);
                    body.fx = Effects::default();
                    return (body, Vec::new());
                }
            }
        }
        body.fx = fx;
        (body, cited)
    }

    /// One effect with its issuer, audience, proofs and expiry filled in, and the delegation to the
    /// gateway it relies on (none for the gateway's own commands).
    fn authorize_effect<'p>(
        &self,
        effect: &Effect,
        route: &Route,
        auth: &Authorized,
        proofs: &'p HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<(Effect, Option<&'p Delegation>), EffectDenied> {
        let mut effect = effect.clone();
        effect.iss = Some(self.did.clone());
        // The gateway's own bookkeeping (awaiting a job it submitted) acts for the gateway itself,
        // but only as the answer of the compute network that ran the task: a Wasm guest asking for
        // it would otherwise have the gateway watch, and report, any job it can name.
        if self.awaits_job(effect.cmd.as_str()) {
            let own_job = effect.sub == self.did
                && self
                    .jobs_of(&route.backend)
                    .is_some_and(|jobs| jobs.await_command() == effect.cmd.as_str())
                && effect.args.get("backend") == Some(&Ipld::String(route.backend.clone()));
            if own_job {
                return Ok((effect, None));
            }
            return Err(EffectDenied(format!(
                "{} is the gateway's own, issued only by the network that ran the task",
                effect.cmd
            )));
        }
        if self
            .policy
            .route(&effect.cmd)
            .is_some_and(|r| r.gateway_effects)
        {
            effect.sub = self.did.clone();
            effect.aud = None;
            effect.prf = None;
            effect.exp = effect.exp.or(auth.expires);
            return Ok((effect, None));
        }
        effect.aud = (effect.sub != self.did).then(|| self.did.clone());

        // The gateway invoked this task itself (it is an effect): it already holds the chain.
        if auth.invoker == self.did {
            effect.prf = Some(auth.chain.clone());
            effect.exp = auth.expires;
            return self
                .check_effect(&effect, auth, proofs, now)
                .map(|()| (effect, None));
        }

        // Delegations from the invoker to the gateway that could cover the effect.
        let mut last_error = EffectDenied(format!(
            "the request holds no delegation from {} to this gateway ({}) for {}",
            auth.invoker, self.did, effect.cmd
        ));
        let candidates = proofs.values().filter(|d| {
            let p = &d.payload;
            p.iss == auth.invoker
                && p.aud == self.did
                && p.sub.as_ref().is_none_or(|s| *s == effect.sub)
                && p.cmd.proves(&effect.cmd)
        });
        for delegation in candidates {
            let mut chain = auth.chain.clone();
            chain.push(delegation.cid());
            effect.prf = Some(chain);
            effect.exp = match (auth.expires, delegation.payload.exp) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match self.check_effect(&effect, auth, proofs, now) {
                Ok(()) => return Ok((effect, Some(delegation))),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// Whether `effect`, issued, would validate like any invocation (its cause does not matter for
    /// authority, so the invocation being answered stands in for the receipt).
    fn check_effect(
        &self,
        effect: &Effect,
        auth: &Authorized,
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<(), EffectDenied> {
        let probe = effect
            .issue(auth.invocation, &self.key)
            .map_err(|e| EffectDenied(e.to_string()))?;
        self.authority
            .validate(&probe, proofs, now)
            .map(|_| ())
            .map_err(|e| EffectDenied(format!("{}: {}", e.kind.name(), e.message)))
    }

    /// Whether the gateway runs the effects of `cmd`'s receipts itself.
    pub(super) fn runs_effects(&self, cmd: &Command) -> bool {
        self.policy.route(cmd).is_some_and(|r| r.run_effects)
    }

    /// Runs the effects of `answer` in the background (see the module docs for the bounds), with
    /// the delegations of the request that asked for them.
    pub(super) fn spawn_effects(&self, answer: &Answer, proofs: Option<&HashMap<Cid, Delegation>>) {
        let Some(gateway) = self.this.upgrade() else {
            return;
        };
        let mut proofs = proofs.cloned().unwrap_or_default();
        for d in &answer.proofs {
            proofs.insert(d.cid(), d.clone());
        }
        let queue = gateway.children(answer, 0, &[answer.receipt.body.task]);
        tokio::spawn(async move { gateway.run_effects(queue, proofs).await });
    }

    /// The effects of `answer` as work to do at `depth + 1`, cut where the bounds say so.
    fn children(&self, answer: &Answer, depth: usize, ancestors: &[Cid]) -> Vec<Queued> {
        let bounds = self.policy.effects;
        let forks = answer.receipt.body.fx.fork.len();
        answer
            .effects
            .iter()
            .enumerate()
            // Bookkeeping effects are answered by the gateway's watcher, not run as requests.
            .filter(|(_, invocation)| !self.awaits_job(invocation.payload.cmd.as_str()))
            .map(|(i, invocation)| {
                let task = invocation.payload.task_id();
                let cut = if depth + 1 > bounds.max_depth {
                    Some(Out::error(
                        "EffectDepthExceeded",
                        format!(
                            "effects are run at most {} deep below a request",
                            bounds.max_depth
                        ),
                    ))
                } else if i < forks && i >= bounds.max_fanout {
                    Some(Out::error(
                        "EffectFanOutExceeded",
                        format!(
                            "at most {} fork effects of one receipt are run",
                            bounds.max_fanout
                        ),
                    ))
                } else if ancestors.contains(&task) {
                    Some(Out::error(
                        "EffectCycle",
                        format!("task {task} is already running above this effect"),
                    ))
                } else {
                    None
                };
                let mut above = ancestors.to_vec();
                above.push(task);
                Queued {
                    invocation: invocation.clone(),
                    depth: depth + 1,
                    ancestors: above,
                    cut,
                }
            })
            .collect()
    }

    /// Works through effects breadth first (a queue, not recursion), recording an error receipt for
    /// each one cut or refused, so every effect issued has a receipt.
    async fn run_effects(self: Arc<Self>, first: Vec<Queued>, proofs: HashMap<Cid, Delegation>) {
        let mut queue = VecDeque::from(first);
        let none = HashMap::new();
        while let Some(item) = queue.pop_front() {
            let out = match item.cut {
                Some(out) => out,
                None => match self
                    .handle(
                        &super::container::inbound(&item.invocation, &proofs),
                        &none,
                        None,
                    )
                    .await
                {
                    Ok(answer) => {
                        if self.runs_effects(&item.invocation.payload.cmd) {
                            queue.extend(self.children(&answer, item.depth, &item.ancestors));
                        }
                        continue;
                    }
                    // Someone submitted it already; its receipt is theirs.
                    Err(refusal) if refusal.class == RefusalClass::Replayed => continue,
                    Err(refusal) => Out::error(refusal.name, refusal.message),
                },
            };
            if let Err(e) = self.record_unrun(&item.invocation, out).await {
                tracing::warn!(invocation = %item.invocation.cid(), error = %e.message, "effect not recorded");
            }
        }
    }

    /// Stores an error receipt for an invocation that will not run, and claims its replay key so
    /// that it cannot run later either (if someone already sent it, the receipt is theirs).
    async fn record_unrun(&self, invocation: &Invocation, out: Out) -> Result<(), super::Refusal> {
        let key = dag_cbor_cid(invocation.envelope.signed_bytes());
        let until = self.authority.seen_until(invocation.payload.exp);
        let task = invocation.payload.task_id();
        let body = ReceiptBody {
            ran: invocation.cid(),
            task,
            out,
            fx: Effects::default(),
            meta: gateway_meta("gateway", None, std::time::Duration::ZERO, None),
        };
        let record = Record::unshared(invocation.cid(), task, None);
        match self
            .commit(record, body, Commit::default().with_claim(key, until))
            .await
        {
            Err(refusal) if refusal.class == RefusalClass::Replayed => Ok(()),
            other => other.map(drop),
        }
    }
}

/// Why an effect has no authority, for the `UnauthorizedEffect` receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EffectDenied(String);

impl std::fmt::Display for EffectDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
