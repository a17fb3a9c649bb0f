//! Promises in arguments, resolved before the chain's policies are checked: from results produced
//! earlier in the same request, else from stored receipts, waiting a bounded time for one that has
//! not arrived. And `follow=join`: a receipt, then the receipts of its join chain as they arrive.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cid::Cid;
use ipld_core::ipld::Ipld;
use tokio::time::Instant;

use super::{Answer, Gateway, Refusal, RefusalClass};
use crate::promise::{self, PromiseError, Resolved};

impl Gateway {
    /// `args` with their promises resolved: `Ok(None)` when there are none, `Ok(Some(args))` when
    /// all resolved, `Err` for a branch mismatch (answered with an error receipt). Refuses when a
    /// promised result does not arrive in time. The caller checks the chain first, so nobody makes
    /// the gateway wait without authority.
    pub(super) async fn resolve_promises(
        &self,
        args: &BTreeMap<String, Ipld>,
        known: &HashMap<Cid, Resolved>,
    ) -> Result<Result<Option<BTreeMap<String, Ipld>>, PromiseError>, Refusal> {
        let promises = promise::promises(args);
        if promises.is_empty() {
            return Ok(Ok(None));
        }
        let wait = self.policy.effects.promise_wait;
        let deadline = Instant::now() + wait;
        let mut results = HashMap::with_capacity(promises.len());
        for p in promises {
            if let Some(result) = known.get(&p.target) {
                results.insert(p.target, result.clone());
                continue;
            }
            let Some(receipt) = self.ledger.wait_receipt(p.target, deadline).await? else {
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

    /// The receipt under `cid`, then the receipt of its `join` effect, and so on to the end of the
    /// join chain (at most 64 steps), waiting up to `wait` in all for receipts not yet stored. When
    /// time runs out the last receipt reached is returned; its `fx.join` shows the chain goes on.
    pub async fn receipt_following_joins(
        &self,
        cid: &Cid,
        wait: Duration,
    ) -> Result<Answer, Refusal> {
        let deadline = Instant::now() + wait;
        let mut current = self
            .ledger
            .wait_receipt(*cid, deadline)
            .await?
            .ok_or_else(|| Refusal::not_found("NotFound", format!("no receipt for {cid}")))?;
        for _ in 0..64 {
            let Some(join) = &current.body.fx.join else {
                break;
            };
            match self.ledger.wait_receipt(join.task_id(), deadline).await? {
                Some(next) => current = next,
                None => break,
            }
        }
        Ok(Answer::new(current, Vec::new()))
    }
}
