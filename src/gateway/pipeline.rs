//! Requests that carry several invocations, and promises between invocations.
//!
//! A promise (`{"await/ok": &Task}` and its siblings, see [`crate::promise`]) names a task by id or
//! by invocation CID. Before an invocation is authorised its promises are resolved: from results
//! produced earlier in the same request, else from stored receipts, waiting a bounded time for one
//! that has not arrived. The chain's policies are then checked on the resolved arguments.
//!
//! A pipeline is ordered by those promises: invocations whose awaited results are all known run
//! together, concurrently, then the ones that awaited them, and so on. The first refusal stops the
//! pipeline: what already ran is answered, what did not is left unrun (and unseen, so it can be
//! sent again).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cid::Cid;
use futures_util::future::join_all;
use ipld_core::ipld::Ipld;
use tokio::time::Instant;

use super::{Gateway, Refusal, RefusalClass, Reply, Request, Summary, decode_stored};
use crate::promise::{self, PromiseError, Resolved};
use crate::receipt::Receipt;
use crate::ucan::{Delegation, Invocation};

/// How often a waiter looks again when no wake-up came (receipts stored by another process).
const POLL: Duration = Duration::from_millis(250);

impl Gateway {
    /// Runs the invocations of `request` in dependency order.
    pub(super) async fn pipeline(
        &self,
        request: Request,
        summary: &mut Summary,
        wait: Option<Duration>,
    ) -> Result<Reply, Refusal> {
        let invocations = &request.invocations;
        summary.note(&invocations[0]);
        let deps = dependencies(invocations);

        let mut done = vec![false; invocations.len()];
        let mut known: HashMap<Cid, Resolved> = HashMap::new();
        let mut answers = Vec::with_capacity(invocations.len());
        let mut refused = None;
        while refused.is_none() {
            let ready: Vec<usize> = (0..invocations.len())
                .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
                .collect();
            if ready.is_empty() {
                break;
            }
            let results = join_all(
                ready
                    .iter()
                    .map(|&i| self.invoke_one(&invocations[i], &request.proofs, &known, wait)),
            )
            .await;
            for (i, result) in ready.into_iter().zip(results) {
                done[i] = true;
                let invocation = &invocations[i];
                match result {
                    Ok(answer) => {
                        let resolved = Resolved {
                            out: answer.receipt.body.out.clone(),
                            receipt: answer.receipt.cid(),
                        };
                        known.insert(invocation.cid(), resolved.clone());
                        known.insert(answer.receipt.body.task, resolved);
                        if self.runs_effects(invocation) && !answer.effects.is_empty() {
                            self.spawn_effects(&answer, &request.proofs);
                        }
                        answers.push(answer);
                    }
                    Err(refusal) => {
                        if refused.is_none() {
                            refused = Some((invocation.cid(), refusal));
                        }
                    }
                }
            }
        }
        match refused {
            Some((_, refusal)) if answers.is_empty() => Err(refusal),
            refused => Ok(Reply { answers, refused }),
        }
    }

    /// The invocation's arguments with its promises resolved: `Ok(None)` when it has none,
    /// `Ok(Some(args))` when all resolved, `Err` for a branch mismatch (answered with an error
    /// receipt). Refuses when a promised result does not arrive in time.
    pub(super) async fn resolve_promises(
        &self,
        invocation: &Invocation,
        proofs: &HashMap<Cid, Delegation>,
        known: &HashMap<Cid, Resolved>,
        now: i64,
    ) -> Result<Result<Option<BTreeMap<String, Ipld>>, PromiseError>, Refusal> {
        let args = &invocation.payload.args;
        let promises = promise::promises(args);
        if promises.is_empty() {
            return Ok(Ok(None));
        }
        // Nobody gets the gateway to wait on their behalf without authority for the request: the
        // chain is checked now, except for its policies, which need the resolved values.
        self.authorize_unchecked(invocation, proofs, now)?;

        let wait = self.policy.effects.promise_wait;
        let deadline = Instant::now() + wait;
        let mut results = HashMap::with_capacity(promises.len());
        for p in promises {
            if let Some(result) = known.get(&p.target) {
                results.insert(p.target, result.clone());
                continue;
            }
            let Some(receipt) = self.wait_receipt(p.target, deadline).await? else {
                return Err(Refusal::new(
                    RefusalClass::Unavailable,
                    "UnresolvedPromise",
                    format!(
                        "no result for {} arrived within {} ms; send the invocation again later",
                        p.target,
                        wait.as_millis()
                    ),
                ));
            };
            let receipt_cid = receipt.cid();
            results.insert(
                p.target,
                Resolved {
                    out: receipt.body.out,
                    receipt: receipt_cid,
                },
            );
        }
        Ok(promise::resolve(args, &results).map(Some))
    }

    /// The receipt found under `cid` (invocation, task, receipt or alias), waiting until
    /// `deadline` for it to be stored; `None` if it was not.
    pub(super) async fn wait_receipt(
        &self,
        cid: Cid,
        deadline: Instant,
    ) -> Result<Option<Receipt>, Refusal> {
        loop {
            // Registered before looking, so a receipt stored in between still wakes us.
            let stored = self.stored.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            if let Some(found) = self.store.receipt_by_any(cid).await? {
                return decode_stored(&found).map(Some);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), stored).await;
        }
    }

    /// The receipt under `cid`, then the receipt of its `join` effect, and so on to the end of the
    /// join chain (at most 64 steps), waiting up to `wait` in all for receipts not yet stored. When
    /// time runs out the last receipt reached is returned; its `fx.join` shows the chain goes on.
    pub async fn receipt_following_joins(
        &self,
        cid: &Cid,
        wait: Duration,
    ) -> Result<super::Answer, Refusal> {
        let deadline = Instant::now() + wait;
        let mut current = self
            .wait_receipt(*cid, deadline)
            .await?
            .ok_or_else(|| Refusal::not_found("NotFound", format!("no receipt for {cid}")))?;
        for _ in 0..64 {
            let Some(join) = &current.body.fx.join else {
                break;
            };
            match self.wait_receipt(join.task_id(), deadline).await? {
                Some(next) => current = next,
                None => break,
            }
        }
        Ok(super::Answer::new(current, Vec::new()))
    }
}

/// For each invocation, the others in the request it awaits. There can be no cycle: a promise
/// names the hash of the task it awaits, and a task cannot contain its own hash.
fn dependencies(invocations: &[Invocation]) -> Vec<Vec<usize>> {
    let mut by_id: HashMap<Cid, usize> = HashMap::new();
    for (i, inv) in invocations.iter().enumerate() {
        by_id.insert(inv.cid(), i);
        by_id.insert(inv.payload.task_id(), i);
    }
    let deps: Vec<Vec<usize>> = invocations
        .iter()
        .map(|inv| {
            let mut d: Vec<usize> = promise::promises(&inv.payload.args)
                .iter()
                .filter_map(|p| by_id.get(&p.target).copied())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    deps
}
