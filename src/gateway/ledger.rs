//! The ledger: the gateway's durable record and what watches it. It owns the store, the
//! notification that wakes requests waiting for a receipt (promises, `follow=join`), and the metrics,
//! so every store call is timed in one place and every invocation is counted in one place.
//!
//! Replay protection lives here: an invocation claims its replay key once, whatever wire format
//! carried it, in the same commit as its receipt (or, for a destructive task, as its intent), and a
//! second claim is refused as `Replayed`. Before anything runs, a key already claimed, or in flight
//! in this process, is refused too, so a duplicate is neither run nor answered twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use tokio::time::Instant as Deadline;

use super::{Refusal, RefusalClass};
use crate::metrics::Metrics;
use crate::receipt::Receipt;
use crate::store::{Commit, JobEntry, Outcome, Store, StoreError, StoredReceipt};
use crate::ucan::validate::unix_now;

/// How often a waiter looks again when no wake-up came, on a store that does not announce other
/// processes' commits (receipts stored by another process sharing a SQLite file).
const POLL: Duration = Duration::from_millis(250);

/// What a stored receipt is filed under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    /// The invocation answered.
    pub ran: Cid,
    /// Its task id.
    pub task: Cid,
    /// Its work id, when its result may ever be reused.
    pub work: Option<Cid>,
    /// Whether the task is pure (a memoization source when it succeeded).
    pub pure: bool,
}

impl Record {
    /// The stored form of `receipt` filed under this record.
    pub(crate) fn stored(&self, receipt: &Receipt) -> StoredReceipt {
        StoredReceipt {
            receipt_cid: receipt.cid(),
            ran: self.ran,
            task_id: self.task,
            work_id: self.work,
            ok: receipt.body.out.is_ok(),
            pure: self.pure,
            created_at: unix_now(),
            bytes: receipt.bytes().to_vec(),
        }
    }

    /// A receipt that is never a memoization source: nothing ran that could be reused (a job's final
    /// state, an effect that was cut, a revocation).
    pub(crate) fn unshared(ran: Cid, task: Cid, work: Option<Cid>) -> Self {
        Record {
            ran,
            task,
            work,
            pure: false,
        }
    }
}

/// The store, its notifications and the metrics.
pub(crate) struct Ledger {
    store: Arc<dyn Store>,
    /// Woken whenever a receipt is stored, for requests waiting on one.
    stored: tokio::sync::Notify,
    metrics: Metrics,
    /// Replay keys of invocations running in this process.
    running: Mutex<HashSet<Cid>>,
    /// How often a waiter looks again on a store that announces commits, in case one was missed.
    refresh: Duration,
}

/// Keeps a replay key in flight until dropped (however the request ends).
pub(crate) struct Running<'a> {
    ledger: &'a Ledger,
    key: Cid,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.ledger.running.lock() {
            running.remove(&self.key);
        }
    }
}

impl Ledger {
    /// A ledger over `store`, with fresh metrics; waits look again every `refresh` when the store
    /// announces commits.
    pub(crate) fn new(store: Arc<dyn Store>, refresh: Duration) -> Self {
        Ledger {
            store,
            stored: tokio::sync::Notify::new(),
            metrics: Metrics::new(),
            running: Mutex::new(HashSet::new()),
            refresh,
        }
    }

    /// The store (for health checks and for executors' blobs and journal).
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The gateway's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Counts one invocation (or one request that never got as far as an invocation) by the
    /// operator-controlled `label` and its outcome, with its latency.
    pub(crate) fn observe(&self, label: &str, outcome: &str, elapsed: Duration) {
        self.metrics
            .invocations
            .with_label_values(&[label, outcome])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[label])
            .observe(elapsed.as_secs_f64());
    }

    /// Lets `invocation` run unless its replay key `key` was claimed already (by any process sharing
    /// the store) or is in flight in this process; the guard keeps it in flight until dropped. The
    /// key itself is claimed by the commit that answers the invocation.
    pub(crate) async fn start(&self, key: Cid, invocation: Cid) -> Result<Running<'_>, Refusal> {
        let replayed = || {
            Refusal::new(
                RefusalClass::Replayed,
                "Replayed",
                format!("invocation {invocation} was already received"),
            )
        };
        {
            let mut running = self.running.lock().map_err(|_| replayed())?;
            if !running.insert(key) {
                return Err(replayed());
            }
        }
        let guard = Running { ledger: self, key };
        if self.timed("seen", self.store.seen(key)).await? {
            return Err(replayed());
        }
        Ok(guard)
    }

    /// Commits `commit` in one durable transaction. A claim of a replay key someone else committed
    /// first is refused as `Replayed` for `invocation`, and nothing is written. Wakes anyone waiting
    /// for receipts once one is stored.
    pub(crate) async fn commit(&self, commit: Commit, invocation: Cid) -> Result<Outcome, Refusal> {
        let stores_receipt = commit.receipt.is_some();
        match self.timed("commit", self.store.commit(commit)).await? {
            Outcome::Replayed => Err(Refusal::new(
                RefusalClass::Replayed,
                "Replayed",
                format!("invocation {invocation} was already received"),
            )),
            // Another replica took the last use while this task ran: its receipt is not stored.
            Outcome::QuotaExceeded(charge) => {
                Err(super::quota::no_invocation_left(&charge, unix_now()))
            }
            outcome => {
                if stores_receipt && outcome == Outcome::Committed {
                    self.stored.notify_waiters();
                }
                Ok(outcome)
            }
        }
    }

    /// Resolves the next time a receipt is stored in this process (create it, and `enable` it,
    /// before looking, so a receipt stored in between still wakes the caller).
    pub(crate) fn stored(&self) -> tokio::sync::futures::Notified<'_> {
        self.stored.notified()
    }

    /// The receipt found under `cid` taken as an invocation CID, task id, receipt CID or alias.
    pub(crate) async fn receipt(&self, cid: Cid) -> Result<Option<Receipt>, Refusal> {
        match self.store.receipt_by_any(cid).await? {
            Some(stored) => decode(&stored).map(Some),
            None => Ok(None),
        }
    }

    /// Whether a receipt answering the invocation `ran` is stored.
    pub(crate) async fn answered(&self, ran: Cid) -> Result<bool, StoreError> {
        Ok(self.store.receipt_by_invocation(ran).await?.is_some())
    }

    /// The stored receipt whose own CID is `receipt`, as stored.
    pub(crate) async fn stored_receipt(
        &self,
        receipt: Cid,
    ) -> Result<Option<StoredReceipt>, StoreError> {
        self.store.receipt_by_cid(receipt).await
    }

    /// The receipt found under `cid`, waiting until `deadline` for it to be stored; `None` if it
    /// was not. Woken by receipts stored here and by the store's announcements of receipts other
    /// processes stored; without announcements it looks again every [`POLL`].
    pub(crate) async fn wait_receipt(
        &self,
        cid: Cid,
        deadline: Deadline,
    ) -> Result<Option<Receipt>, Refusal> {
        let mut changes = self.store.changes();
        let every = match changes {
            Some(_) => self.refresh.max(POLL),
            None => POLL,
        };
        loop {
            // Registered before looking, so a receipt stored in between still wakes us.
            let stored = self.stored.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            let seen = changes.as_mut().map(|c| c.borrow_and_update().receipts);
            if let Some(found) = self.receipt(cid).await? {
                return Ok(Some(found));
            }
            let now = Deadline::now();
            if now >= deadline {
                return Ok(None);
            }
            let announced = async {
                match changes.as_mut() {
                    Some(rx) => loop {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        if Some(rx.borrow_and_update().receipts) != seen {
                            break;
                        }
                    },
                    None => std::future::pending().await,
                }
            };
            let woken = async {
                tokio::select! {
                    () = stored => {}
                    () = announced => {}
                }
            };
            let _ = tokio::time::timeout((deadline - now).min(every), woken).await;
        }
    }

    /// The stored receipt of an earlier successful run of the pure work `work`, with the CID of the
    /// receipt of the run that actually happened.
    pub(crate) async fn memoized(&self, work: Cid) -> Option<(Receipt, Cid)> {
        let stored = self
            .timed("memoized", self.store.memoized(work))
            .await
            .ok()??;
        let receipt = Receipt::decode(&stored.bytes).ok()?;
        // Point at the receipt of the run that actually happened, not at another memoized answer.
        let origin = match receipt.body.meta.get(crate::receipt::META_MEMOIZED) {
            Some(ipld_core::ipld::Ipld::Link(cid)) => *cid,
            _ => stored.receipt_cid,
        };
        Some((receipt, origin))
    }

    /// Every job whose final receipt is still owed, oldest first.
    pub(crate) async fn jobs(&self) -> Result<Vec<JobEntry>, StoreError> {
        self.store.pending().await
    }

    /// Forgets the job recorded under `key`.
    pub(crate) async fn remove_job(&self, key: Cid) -> Result<(), StoreError> {
        self.timed(
            "commit",
            self.store.commit(Commit::default().without_job(key)),
        )
        .await
        .map(drop)
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

/// A stored receipt, decoded.
fn decode(stored: &StoredReceipt) -> Result<Receipt, Refusal> {
    Receipt::decode(&stored.bytes).map_err(|e| {
        Refusal::new(
            RefusalClass::Unavailable,
            "StoreUnavailable",
            format!("stored receipt unreadable: {e}"),
        )
    })
}
