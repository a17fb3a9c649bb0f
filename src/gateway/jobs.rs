//! Jobs that outlive their request: a backend that cannot finish within the wait window answers
//! with a join effect awaiting the job (e.g. `/bacalhau/job/await`). Once the gateway has issued
//! that effect, the job is recorded in the store ([`Gateway::track`]); a background watcher
//! ([`Gateway::watch_pending`]) polls each job every 250 ms (backing off while its backend fails; up
//! to 32 polls at once), stops it when its deadline passes, and
//! on a terminal state signs the final receipt — `ran` = the issued await invocation, `task` = the
//! effect's task id — so `GET /receipts/{cid}` answers for either. Pending jobs live in the store,
//! so a restarted gateway picks them up again. Each job is watched by one process at a time: the
//! watcher leases the jobs it polls ([`crate::store::JobStore::lease_jobs`]) for the job lease
//! ([`super::Sharing::job_lease`]) and renews the lease while it lives, so when a replica dies
//! another takes its jobs over once their leases end.
//!
//! [`Jobs`] holds what this process knows beyond the store: which invocations are in flight here, and
//! the last state seen of each job.
//!
//! A job is also recorded the moment it is submitted (by the executor, keyed by the invocation).
//! While the request that submitted it runs ([`InFlight`]), that request owns it and removes the
//! record once its receipt is stored. If the request never gets that far — the caller hung up, or the
//! process died — the watcher finishes the job itself and stores the receipt for the original
//! invocation, so no submitted job is ever left without one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use futures_util::StreamExt;
use ipld_core::ipld::Ipld;

use super::ledger::Record;
use super::quota::JobNote;
use super::{Gateway, Refusal, RefusalClass};
use crate::exec::journal::{AwaitedJob, JobRecord};
use crate::exec::{Executed, JobStatus};
use crate::receipt::{Effect, Effects, Out, Receipt, ReceiptBody, gateway_meta};
use crate::store::{Commit, IntentChange, JobEntry};
use crate::ucan::Invocation;
use crate::ucan::validate::unix_now;

/// The pause between polls of a job, so a change of state is seen within about this long.
const POLL_FIRST: Duration = Duration::from_millis(250);
/// The longest pause between polls of a job whose backend keeps failing (doubling from
/// [`POLL_FIRST`] after each failure).
const POLL_MAX: Duration = Duration::from_secs(5);
/// How often the watcher looks for due jobs.
const TICK: Duration = Duration::from_millis(50);
/// How often the watcher looks for destructive runs that were cut off.
const SWEEP: Duration = Duration::from_secs(1);
/// The most jobs polled at once: bounds the calls in flight to the backends.
const POLL_CONCURRENCY: usize = 32;
/// The most jobs one process leases at once.
const LEASE_LIMIT: usize = 4096;

/// Who holds the leases this process takes: its host, process id and a random nonce, so two
/// processes never share one, while gateways of one process (a restart in tests) do.
fn holder() -> &'static str {
    static HOLDER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOLDER.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        let nonce = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
        format!("{host}/{}/{nonce:016x}", std::process::id())
    })
}

/// The jobs this process holds leases on, and when to renew them.
struct Leases {
    /// Leased to this process.
    held: HashSet<Cid>,
    /// Pending but held by another process when last asked.
    others: HashSet<Cid>,
    /// When to lease again even if no new job appeared.
    renew_at: Instant,
}

/// A job whose final receipt is still to come, as `GET /receipts/{cid}` describes it meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// The backend running it.
    pub backend: String,
    /// The backend's job id.
    pub job: String,
    /// The last state the watcher saw (`Submitted` before the first poll).
    pub state: String,
}

impl PendingJob {
    /// `{"pending": {"backend", "job", "state"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "pending": { "backend": self.backend, "job": self.job, "state": self.state } })
    }
}

/// Work that outlives a request, as this process sees it: the invocations whose requests are running
/// here and the last state seen of each job.
#[derive(Default)]
pub(crate) struct Jobs {
    inflight: InFlight,
    progress: Progress,
}

impl Jobs {
    /// Marks `invocation` in flight until the guard is dropped: a job it submits is the request's to
    /// finish, not the watcher's.
    pub(crate) fn enter(&self, invocation: Cid) -> InFlightGuard<'_> {
        self.inflight.enter(invocation)
    }
}

/// Last seen states by effect task id and by await invocation CID.
#[derive(Default)]
struct Progress(Mutex<HashMap<Cid, String>>);

impl Progress {
    fn set(&self, record: &JobRecord, state: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(record.ran, state.to_owned());
            map.insert(record.task, state.to_owned());
        }
    }

    fn forget(&self, record: &JobRecord) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&record.ran);
            map.remove(&record.task);
        }
    }

    fn get(&self, cid: &Cid) -> Option<String> {
        self.0.lock().ok()?.get(cid).cloned()
    }
}

/// Invocations whose request is still running in this process: a job recorded as submitted for one
/// of them is the request's to finish, not the watcher's.
#[derive(Default)]
struct InFlight(Mutex<HashSet<Cid>>);

/// Marks an invocation in flight until dropped, however the request ends (a caller that hangs up
/// drops the request's future, and with it this guard).
pub(crate) struct InFlightGuard<'a> {
    set: &'a InFlight,
    invocation: Cid,
}

impl InFlight {
    fn enter(&self, invocation: Cid) -> InFlightGuard<'_> {
        if let Ok(mut set) = self.0.lock() {
            set.insert(invocation);
        }
        InFlightGuard {
            set: self,
            invocation,
        }
    }

    fn contains(&self, invocation: &Cid) -> bool {
        // A poisoned lock reads as "in flight": the watcher then leaves the job alone rather than
        // risk a second receipt; the next start picks it up.
        self.0.lock().map_or(true, |set| set.contains(invocation))
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.0.lock() {
            set.remove(&self.invocation);
        }
    }
}

/// Per-job polling state, in memory only: after a restart every job is simply due at once.
struct Due {
    at: Instant,
    pause: Duration,
    state: Option<String>,
}

impl Gateway {
    /// The job behind `cid` (an await invocation or its task id) if its receipt is still to come.
    pub async fn pending_job(&self, cid: &Cid) -> Option<PendingJob> {
        let pending = self.ledger.jobs().await.ok()?;
        pending.into_iter().find_map(|p| {
            let record = JobRecord::decode(&p.payload)?;
            (record.ran == *cid || record.task == *cid).then(|| PendingJob {
                state: self
                    .jobs
                    .progress
                    .get(cid)
                    .unwrap_or_else(|| "Submitted".to_owned()),
                backend: p.backend,
                job: p.job_id,
            })
        })
    }

    /// The pending job an issued await effect stands for, to be committed with the receipt holding
    /// the effect so the watcher finishes it; `None` for any other effect. An await effect without a
    /// job fails the receipt: the caller would otherwise wait for a receipt that never comes. The
    /// `note` (the quotas the task's run counts against) is kept with it, for the final receipt to
    /// charge what the job consumed.
    pub(crate) fn awaited_job(
        &self,
        effect: &Effect,
        issued: &Invocation,
        note: Option<Ipld>,
    ) -> Result<Option<JobEntry>, Refusal> {
        if !self.awaits_job(effect.cmd.as_str()) {
            return Ok(None);
        }
        let Some(awaited) = AwaitedJob::from_args(&effect.args) else {
            return Err(Refusal::new(
                RefusalClass::Unavailable,
                "ReceiptFailed",
                "an await effect without job and backend",
            ));
        };
        let record = JobRecord {
            submitted: false,
            ran: issued.cid(),
            task: effect.task_id(),
            deadline: awaited.deadline,
            since: unix_now(),
            note,
        };
        Ok(Some(JobEntry {
            key: record.task,
            backend: awaited.backend,
            job_id: awaited.job,
            payload: record.encode(),
        }))
    }

    /// Starts the background watcher of pending jobs; it runs until the returned handle is aborted.
    pub fn watch_pending(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut due: HashMap<Cid, Due> = HashMap::new();
            let mut leases = Leases {
                held: HashSet::new(),
                others: HashSet::new(),
                renew_at: Instant::now(),
            };
            let mut sweep = Instant::now();
            loop {
                self.poll_pending(&mut due, &mut leases).await;
                if sweep.elapsed() >= SWEEP {
                    self.answer_interrupted().await;
                    sweep = Instant::now();
                }
                tokio::time::sleep(TICK).await;
            }
        })
    }

    /// The pending jobs this process holds the lease of, leasing again when a job appeared that
    /// nobody was known to hold, or a third of the lease has passed.
    async fn leased(&self, leases: &mut Leases) -> Option<Vec<JobEntry>> {
        let pending = match self.ledger.jobs().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "reading pending jobs failed");
                return None;
            }
        };
        let unknown = pending
            .iter()
            .any(|p| !leases.held.contains(&p.key) && !leases.others.contains(&p.key));
        if unknown || Instant::now() >= leases.renew_at {
            let lease = self.sharing.job_lease.max(Duration::from_secs(1));
            let now = unix_now();
            let until = now.saturating_add(i64::try_from(lease.as_secs()).unwrap_or(i64::MAX));
            match self
                .ledger
                .store()
                .lease_jobs(holder(), now, until, LEASE_LIMIT)
                .await
            {
                Ok(jobs) => {
                    leases.held = jobs.iter().map(|j| j.key).collect();
                    leases.others = pending
                        .iter()
                        .map(|p| p.key)
                        .filter(|k| !leases.held.contains(k))
                        .collect();
                    leases.renew_at = Instant::now() + lease / 3;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leasing pending jobs failed");
                    return None;
                }
            }
        }
        Some(
            pending
                .into_iter()
                .filter(|p| leases.held.contains(&p.key))
                .collect(),
        )
    }

    /// One pass over the pending jobs this process holds that are due.
    async fn poll_pending(&self, due: &mut HashMap<Cid, Due>, leases: &mut Leases) {
        let Some(pending) = self.leased(leases).await else {
            return;
        };
        due.retain(|key, _| pending.iter().any(|p| p.key == *key));
        let now = Instant::now();
        let mut ready = Vec::new();
        for job in pending {
            let entry = due.remove(&job.key).unwrap_or(Due {
                at: now,
                pause: POLL_FIRST,
                state: None,
            });
            if entry.at > now {
                due.insert(job.key, entry);
            } else {
                ready.push((job, entry));
            }
        }
        // Polled side by side, a bounded number at a time, so a thousand jobs are each seen within
        // about one pause rather than one after another.
        let polling = futures_util::stream::iter(ready)
            .map(|(job, mut entry)| async move {
                self.poll_one(&job, &mut entry).await;
                (job.key, entry)
            })
            .buffer_unordered(POLL_CONCURRENCY)
            .collect::<Vec<(Cid, Due)>>();
        // A pass over a slow backend can outlast the lease: keep it renewed meanwhile, or another
        // process would take the jobs over while they are still being polled here.
        let renewing = async {
            let lease = self.sharing.job_lease.max(Duration::from_secs(1));
            loop {
                tokio::time::sleep(lease / 3).await;
                let now = unix_now();
                let until = now.saturating_add(i64::try_from(lease.as_secs()).unwrap_or(i64::MAX));
                let store = self.ledger.store();
                if let Err(e) = store.lease_jobs(holder(), now, until, LEASE_LIMIT).await {
                    tracing::warn!(error = %e, "renewing job leases failed");
                }
            }
        };
        let polled = tokio::select! {
            polled = polling => polled,
            () = renewing => Vec::new(),
        };
        due.extend(polled);
    }

    /// Polls one due job, settling it when it is over; `entry` says when it is due next.
    async fn poll_one(&self, job: &JobEntry, entry: &mut Due) {
        let Some(record) = JobRecord::decode(&job.payload) else {
            tracing::error!(key = %job.key, "unreadable pending job; dropping it");
            let _ = self.ledger.remove_job(job.key).await;
            return;
        };
        if record.submitted {
            // The request that submitted it finishes it, unless that request is gone (the
            // caller hung up, or an earlier process died): then the job is the watcher's.
            if self.jobs.inflight.contains(&record.ran) || self.owned_elsewhere(job, &record) {
                entry.at = Instant::now() + entry.pause;
                return;
            }
            if let Ok(true) = self.ledger.answered(record.ran).await {
                let _ = self.ledger.remove_job(job.key).await;
                return;
            }
        }
        if let Some(executed) = self.check(job, &record, entry).await
            && let Err(e) = self.settle(job, &record, executed).await
        {
            tracing::warn!(job = %job.job_id, error = %e.message, "storing the final receipt failed; will retry");
        }
        entry.at = Instant::now() + entry.pause;
    }

    /// Whether a submitted job may still belong to a request running in another process sharing
    /// the store: that request waits at most its backend's wait window, so until then (and a little
    /// more) the job is left to it.
    fn owned_elsewhere(&self, job: &JobEntry, record: &JobRecord) -> bool {
        if self.ledger.store().changes().is_none() {
            // Nobody else announces commits here: a request not in flight in this process is gone.
            return false;
        }
        let wait = self
            .jobs_of(&job.backend)
            .map_or(Duration::ZERO, |j| j.wait());
        let owned_until = record
            .since
            .saturating_add(i64::try_from(wait.as_secs()).unwrap_or(i64::MAX))
            .saturating_add(2);
        unix_now() <= owned_until
    }

    /// Polls one job: its outcome when it is over (or past its deadline), `None` while it runs.
    async fn check(&self, job: &JobEntry, record: &JobRecord, entry: &mut Due) -> Option<Executed> {
        let Some(executor) = self.jobs_of(&job.backend) else {
            return Some(Executed::failed(
                "ExecutionFailed",
                format!("backend {} is no longer configured", job.backend),
            ));
        };
        if unix_now() > record.deadline {
            let reason = "the gateway's total timeout for the task passed";
            if let Err(e) = executor.stop(&job.job_id, reason).await {
                tracing::warn!(job = %job.job_id, error = %e, "stopping a job past its deadline failed");
            }
            let mut out = Out::error(
                "Timeout",
                format!("job {} {reason}; it was stopped", job.job_id),
            );
            if let Out::Error { details, .. } = &mut out {
                details.insert("job".to_owned(), Ipld::String(job.job_id.clone()));
            }
            // The backend reports nothing of a job stopped unfinished: it counts as running from
            // when it was recorded until now.
            let ran = u64::try_from(unix_now().saturating_sub(record.since)).unwrap_or(0);
            return Some(Executed {
                run_time: Some(Duration::from_secs(ran)),
                ..Executed::finished(out)
            });
        }
        match executor.status(&job.job_id).await {
            Ok(JobStatus::Finished(executed)) => Some(*executed),
            Ok(JobStatus::Running { state }) => {
                self.jobs.progress.set(record, &state);
                entry.pause = POLL_FIRST;
                if entry.state.as_ref() != Some(&state) {
                    tracing::debug!(job = %job.job_id, %state, "job state changed");
                    entry.state = Some(state);
                }
                None
            }
            Err(e) => {
                tracing::debug!(job = %job.job_id, error = %e, "polling a job failed");
                entry.pause = (entry.pause * 2).min(POLL_MAX);
                None
            }
        }
    }

    /// Signs and stores the final receipt of an awaited job, then forgets the job, charging what the
    /// job consumed to the quotas its record notes, in the same commit. A receipt already stored
    /// for the await invocation (a crash after storing it) is kept, not issued twice.
    async fn settle(
        &self,
        job: &JobEntry,
        record: &JobRecord,
        executed: Executed,
    ) -> Result<(), Refusal> {
        if !self.ledger.answered(record.ran).await? {
            let now = unix_now();
            let elapsed = u64::try_from(now.saturating_sub(record.since)).unwrap_or(0);
            let used = super::quota::consumed(&executed);
            let body = ReceiptBody {
                ran: record.ran,
                task: record.task,
                out: executed.out,
                fx: Effects::default(),
                meta: gateway_meta(&job.backend, None, Duration::from_secs(elapsed), None),
            };
            let quotas = record
                .note
                .as_ref()
                .and_then(JobNote::read)
                .map_or_else(Vec::new, |note| note.settle_charges(now, used));
            let record = Record::unshared(record.ran, record.task, None);
            let commit = Commit {
                quotas,
                ..Commit::default().without_job(job.key)
            };
            let receipt = self.commit(record, body, commit).await?;
            let ok = receipt.body.out.is_ok();
            tracing::info!(job = %job.job_id, receipt = %receipt.cid(), ok, "awaited job settled");
        } else {
            self.ledger.remove_job(job.key).await?;
        }
        self.jobs.progress.forget(record);
        Ok(())
    }

    /// Answers every destructive run that was cut off (its intent still open past the time the run
    /// could take): the invocation that opened it gets an `Interrupted` receipt, which settles the
    /// intent, so a resent invocation is answered from the store instead of being stuck. Another
    /// process may do the same at once; the intent is settled by whichever commit comes first.
    async fn answer_interrupted(&self) {
        let interrupted = match self.ledger.store().interrupted(unix_now()).await {
            Ok(intents) => intents,
            Err(e) => {
                tracing::warn!(error = %e, "reading interrupted runs failed");
                return;
            }
        };
        for intent in interrupted {
            let body = ReceiptBody {
                ran: intent.invocation,
                task: intent.task,
                out: super::schedule::interrupted(),
                fx: Effects::default(),
                meta: gateway_meta("gateway", None, Duration::ZERO, None),
            };
            let record = Record::unshared(intent.invocation, intent.task, None);
            let Ok(receipt) = Receipt::issue(body, &self.key) else {
                continue;
            };
            let commit = Commit::default()
                .with_receipt(record.stored(&receipt))
                .with_intent(IntentChange::Complete {
                    task: intent.task,
                    receipt: receipt.cid(),
                });
            match self.ledger.commit(commit, intent.invocation).await {
                Ok(_) => {
                    tracing::info!(task = %intent.task, invocation = %intent.invocation, "interrupted run answered")
                }
                Err(e) => {
                    tracing::debug!(task = %intent.task, error = %e.message, "interrupted run not answered")
                }
            }
        }
    }
}
