//! Requests that carry several invocations, in any wire format: they run in the order their promises
//! impose. A promise (`{"await/ok": &Task}` and its siblings, see [`crate::promise`]) names a task by
//! id or by invocation CID; invocations whose awaited results are all known run together,
//! concurrently, then the ones that awaited them, and so on. There can be no cycle: a promise names
//! the hash of the task it awaits, and a task cannot contain its own hash.
//!
//! A UCAN 1.0 pipeline stops at its first refusal: what already ran is answered, what did not is
//! left unrun (and unseen, so it can be sent again). A ucanto message answers every invocation, so
//! there a refusal stops nothing.

use std::collections::HashMap;
use std::time::Duration;

use cid::Cid;
use futures_util::future::join_all;

use super::inbound::Inbound;
use super::{Answer, Gateway, Refusal};
use crate::promise::{self, Resolved};

/// What a refusal does to the invocations after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnRefusal {
    /// Nothing more starts.
    Stop,
    /// The others run as if it had not been there.
    Continue,
}

impl Gateway {
    /// Runs `inbounds` in dependency order; each result with the index of its invocation, in the
    /// order they finished. Invocations never started (after a refusal, with [`OnRefusal::Stop`])
    /// have no result.
    pub(crate) async fn run_all(
        &self,
        inbounds: &[Inbound<'_>],
        on_refusal: OnRefusal,
        wait: Option<Duration>,
    ) -> Vec<(usize, Result<Answer, Refusal>)> {
        let deps = dependencies(inbounds);
        let mut done = vec![false; inbounds.len()];
        let mut known: HashMap<Cid, Resolved> = HashMap::new();
        let mut results = Vec::with_capacity(inbounds.len());
        let mut stopped = false;
        while !stopped {
            let ready: Vec<usize> = (0..inbounds.len())
                .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
                .collect();
            if ready.is_empty() {
                break;
            }
            let wave = join_all(
                ready
                    .iter()
                    .map(|&i| self.handle(&inbounds[i], &known, wait)),
            )
            .await;
            for (i, result) in ready.into_iter().zip(wave) {
                done[i] = true;
                match &result {
                    Ok(answer) => {
                        let resolved = Resolved {
                            out: answer.receipt.body.out.clone(),
                            receipt: answer.receipt.cid(),
                        };
                        known.insert(inbounds[i].cid, resolved.clone());
                        known.insert(answer.receipt.body.task, resolved);
                        if self.runs_effects(&inbounds[i].payload.cmd) && !answer.effects.is_empty()
                        {
                            self.spawn_effects(answer, inbounds[i].proofs());
                        }
                    }
                    Err(_) => stopped |= on_refusal == OnRefusal::Stop,
                }
                results.push((i, result));
            }
        }
        results
    }
}

/// For each invocation, the others in the request it awaits.
fn dependencies(inbounds: &[Inbound<'_>]) -> Vec<Vec<usize>> {
    let mut by_id: HashMap<Cid, usize> = HashMap::new();
    for (i, inbound) in inbounds.iter().enumerate() {
        by_id.insert(inbound.cid, i);
        by_id.insert(inbound.payload.task_id(), i);
    }
    inbounds
        .iter()
        .map(|inbound| {
            let mut d: Vec<usize> = promise::promises(&inbound.payload.args)
                .iter()
                .filter_map(|p| by_id.get(&p.target).copied())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}
