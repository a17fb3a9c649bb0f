//! Scheduler guarantees by effect class (the route decides the class):
//!
//! | class            | memoized | retried on host failure | run twice for one task |
//! |------------------|----------|-------------------------|------------------------|
//! | `pure`           | yes      | yes                     | allowed (same result)  |
//! | `nondestructive` | no       | yes                     | allowed                |
//! | `destructive`    | no       | never                   | never, even after a crash |
//!
//! A destructive task records an *intent* (keyed by task id) durably before it starts and settles it
//! with its receipt. A second invocation of the same task gets the first one's outcome; if the
//! intent is open — the gateway stopped while the task may have been running — the task is not
//! started again and the invocation gets an `Interrupted` error receipt instead.
//!
//! Only a host failure (`ExecError`: the backend could not run the task at all) is retried; a task
//! that ran and failed is an outcome, and running it again would only repeat it.

use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;

use super::Gateway;
use crate::config::{Limits, Route};
use crate::exec::Executed;
use crate::receipt::{Effects, Out, Receipt, ReceiptBody, gateway_meta};
use crate::store::IntentState;
use crate::task::{EffectClass, Task};

/// Attempts for tasks that may be retried.
const ATTEMPTS: usize = 3;
/// Pause before the first retry; doubled before each further one.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl Gateway {
    /// Runs the task on the route's backend, retrying host failures unless the task is destructive.
    /// Failing to run at all is an outcome too: the invocation has consumed its replay slot, so the
    /// caller gets a signed account of what happened.
    pub(super) async fn execute(&self, route: &Route, task: &Task, limits: &Limits) -> Executed {
        let Some(executor) = self.executors.get(&route.backend) else {
            return Executed::failed(
                "ExecutionFailed",
                format!("backend {} is not configured", route.backend),
            );
        };
        let attempts = match task.effect {
            EffectClass::Destructive => 1,
            EffectClass::Pure | EffectClass::Nondestructive => ATTEMPTS,
        };
        let mut pause = RETRY_PAUSE;
        let mut attempt = 1;
        loop {
            match executor.execute(task, limits).await {
                Ok(executed) => return executed,
                Err(e) if attempt < attempts => {
                    tracing::warn!(task = %task.id, attempt, error = %e, "executor failed; retrying");
                }
                Err(e) => {
                    tracing::warn!(task = %task.id, attempt, error = %e, "executor failed");
                    return Executed::failed(
                        "ExecutionFailed",
                        format!("the backend could not run the task ({attempt} attempts): {e}"),
                    );
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }

    /// Claims the single run of a destructive task. `None`: claimed, go ahead. `Some(body)`: the
    /// task was claimed before; the body answers without running it.
    pub(super) async fn claim_once(
        &self,
        route: &Route,
        task: &Task,
        started: Instant,
    ) -> Option<ReceiptBody> {
        let answer = |out: Out, earlier| ReceiptBody {
            ran: task.invocation,
            task: task.id,
            out,
            fx: Effects::default(),
            meta: gateway_meta(&route.backend, None, started.elapsed(), earlier),
        };
        let unavailable = |e: crate::store::StoreError| {
            tracing::error!(task = %task.id, error = %e, "intent not recorded");
            answer(
                Out::error(
                    "StoreUnavailable",
                    "could not record the intent to run; the task was not started",
                ),
                None,
            )
        };
        match self.ledger.record_intent(task.id).await {
            Ok(true) => return None,
            Ok(false) => {}
            Err(e) => return Some(unavailable(e)),
        }
        let earlier = match self.ledger.intent(task.id).await {
            Ok(Some(IntentState::Completed { receipt })) => receipt,
            Ok(_) => {
                return Some(answer(
                    Out::error(
                        "Interrupted",
                        "an earlier run of this destructive task started but never finished \
                         (the gateway stopped); it is never started twice",
                    ),
                    None,
                ));
            }
            Err(e) => return Some(unavailable(e)),
        };
        let out = match self.ledger.stored_receipt(earlier).await {
            Ok(Some(stored)) => match Receipt::decode(&stored.bytes) {
                Ok(receipt) => receipt.body.out,
                Err(_) => Out::error("StoreUnavailable", "the earlier receipt is unreadable"),
            },
            _ => Out::error("StoreUnavailable", "the earlier receipt is unavailable"),
        };
        Some(answer(out, Some(earlier)))
    }

    /// Settles a destructive task's intent with its receipt, unless an earlier receipt did.
    pub(super) async fn settle_once(&self, task: &Task, receipt: &Receipt) {
        if matches!(
            receipt.body.meta.get(crate::receipt::META_MEMOIZED),
            Some(Ipld::Link(_))
        ) {
            return;
        }
        if let Err(e) = self.ledger.complete_intent(task.id, receipt.cid()).await {
            tracing::error!(task = %task.id, error = %e, "intent not settled");
        }
    }
}
