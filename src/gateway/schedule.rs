//! Scheduler guarantees by effect class (the route decides the class):
//!
//! | class            | memoized | retried on host failure | run twice for one task |
//! |------------------|----------|-------------------------|------------------------|
//! | `pure`           | yes      | yes                     | allowed (same result)  |
//! | `nondestructive` | no       | yes                     | allowed                |
//! | `destructive`    | no       | never                   | never, even after a crash |
//!
//! A destructive task opens an *intent* (keyed by task id, with the invocation's replay key claimed in
//! the same commit) durably before it starts, and its receipt completes it. A second invocation of
//! the same task gets the first one's outcome. An intent still open past the time its run could take
//! — the gateway stopped while the task may have been running — is never started again: the
//! invocation that opened it gets an `Interrupted` receipt from the job watcher, and a later
//! invocation of the task the same. While the run may still be going, another invocation of the
//! task is refused (`TaskInProgress`, 409) rather than told a result that does not exist yet.
//!
//! Only a host failure (`ExecError`: the backend could not run the task at all) is retried; a task
//! that ran and failed is an outcome, and running it again would only repeat it.

use std::time::{Duration, Instant};

use super::path::Admitted;
use super::{Gateway, Refusal, RefusalClass};
use crate::config::{Limits, Route};
use crate::exec::Executed;
use crate::receipt::{Effects, Out, Receipt, ReceiptBody, gateway_meta};
use crate::store::{Commit, IntentChange, IntentState, Outcome};
use crate::task::{EffectClass, Task};
use crate::ucan::validate::unix_now;

/// Attempts for tasks that may be retried.
const ATTEMPTS: usize = 3;
/// Pause before the first retry; doubled before each further one.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How long past its timeout a destructive task's run may still be settling (signing, committing)
/// before an intent left open counts as interrupted.
const RUN_SLACK: Duration = Duration::from_secs(5);

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

    /// Opens the single run of a destructive task, claiming the invocation's replay key in the same
    /// commit. `None`: opened, run it. `Some(body)`: the task ran, or was cut off, before; the body
    /// answers without running it. Refused while another invocation's run of the task may still
    /// be going.
    pub(super) async fn claim_once(
        &self,
        admitted: &mut Admitted<'_>,
        started: Instant,
    ) -> Result<Option<ReceiptBody>, Refusal> {
        let (route, task) = (admitted.route, &admitted.task);
        let now = unix_now();
        let run = route.limits.timeout.saturating_add(RUN_SLACK).as_secs();
        let until = now.saturating_add(i64::try_from(run).unwrap_or(i64::MAX));
        // A destructive task's invocation (and the job it will hand a backend) is charged with its
        // intent, before it runs: a race for a window's last invocation is settled before anything
        // is destroyed, not after. What the run consumes is charged with its receipt.
        let job = self.jobs_of(&route.backend).is_some();
        let commit = Commit {
            quotas: admitted.quotas.intent_charges(job),
            ..Commit::default()
                .with_claim(admitted.replay.key, admitted.until)
                .with_intent(IntentChange::Open {
                    task: task.id,
                    invocation: task.invocation,
                    until,
                })
        };
        let intent = match self.ledger.commit(commit, task.invocation).await? {
            Outcome::IntentExists(intent) => intent,
            _ => {
                admitted.claimed = true;
                admitted.quotas.charged_with_intent();
                return Ok(None);
            }
        };
        let answer = |out: Out, earlier| ReceiptBody {
            ran: task.invocation,
            task: task.id,
            out,
            fx: Effects::default(),
            meta: gateway_meta(&route.backend, None, started.elapsed(), earlier),
        };
        Ok(Some(match intent.state {
            IntentState::Completed { receipt } => {
                let out = match self.ledger.stored_receipt(receipt).await {
                    Ok(Some(stored)) => match Receipt::decode(&stored.bytes) {
                        Ok(receipt) => receipt.body.out,
                        Err(_) => {
                            Out::error("StoreUnavailable", "the earlier receipt is unreadable")
                        }
                    },
                    _ => Out::error("StoreUnavailable", "the earlier receipt is unavailable"),
                };
                answer(out, Some(receipt))
            }
            IntentState::Open if intent.until < now => answer(interrupted(), None),
            IntentState::Open => {
                return Err(Refusal::new(
                    RefusalClass::Replayed,
                    "TaskInProgress",
                    format!(
                        "task {} is running for invocation {}; its receipt will be found under the task id",
                        task.id, intent.invocation
                    ),
                ));
            }
        }))
    }
}

/// The outcome of a destructive task whose run was cut off: it may or may not have happened, and it
/// is never started again.
pub(super) fn interrupted() -> Out {
    Out::error(
        "Interrupted",
        "an earlier run of this destructive task started but never finished (the gateway stopped); \
         it is never started twice",
    )
}
