//! The ledger: the gateway's durable record and what watches it. It owns the store, the
//! notification that wakes requests waiting for a receipt (promises, `follow=join`), and the metrics,
//! so every store call is timed in one place and every invocation is counted in one place.
//!
//! Replay protection lives here: an invocation claims its replay key once, whatever wire format
//! carried it, and a second claim is refused as `Replayed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cid::Cid;
use tokio::time::Instant as Deadline;

use super::{Refusal, RefusalClass};
use crate::metrics::Metrics;
use crate::receipt::Receipt;
use crate::store::{IntentState, JobEntry, Store, StoreError, StoredReceipt};
use crate::ucan::validate::unix_now;

/// How often a waiter looks again when no wake-up came (receipts stored by another process).
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
}

impl Ledger {
    /// A ledger over `store`, with fresh metrics.
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Ledger {
            store,
            stored: tokio::sync::Notify::new(),
            metrics: Metrics::new(),
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

    /// Claims the replay key of `invocation`: refused as `Replayed` if it was claimed before, by any
    /// request or wire format. Kept until `until` (`None`: forever).
    pub(crate) async fn claim_replay(
        &self,
        key: Cid,
        until: Option<i64>,
        invocation: Cid,
    ) -> Result<(), Refusal> {
        if self
            .timed("mark_seen", self.store.mark_seen(key, until))
            .await?
        {
            return Ok(());
        }
        Err(Refusal::new(
            RefusalClass::Replayed,
            "Replayed",
            format!("invocation {invocation} was already received"),
        ))
    }

    /// Stores a signed receipt under `record`'s keys and wakes anyone waiting for receipts.
    pub(crate) async fn put_receipt(
        &self,
        record: Record,
        receipt: &Receipt,
    ) -> Result<(), Refusal> {
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
    /// was not. Woken by receipts stored here, and looking again every [`POLL`] for receipts stored
    /// by another process.
    pub(crate) async fn wait_receipt(
        &self,
        cid: Cid,
        deadline: Deadline,
    ) -> Result<Option<Receipt>, Refusal> {
        loop {
            // Registered before looking, so a receipt stored in between still wakes us.
            let stored = self.stored.notified();
            tokio::pin!(stored);
            stored.as_mut().enable();
            if let Some(found) = self.receipt(cid).await? {
                return Ok(Some(found));
            }
            let now = Deadline::now();
            if now >= deadline {
                return Ok(None);
            }
            let _ = tokio::time::timeout((deadline - now).min(POLL), stored).await;
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

    /// Records that `delegation` was revoked by the invocation `by`.
    pub(crate) async fn record_revocation(&self, delegation: Cid, by: Cid) -> Result<(), Refusal> {
        self.timed("revoke", self.store.revoke(delegation, by, unix_now()))
            .await?;
        Ok(())
    }

    /// Records the intent to run the destructive task `task`: `true` if it is new.
    pub(crate) async fn record_intent(&self, task: Cid) -> Result<bool, StoreError> {
        self.timed("record_intent", self.store.record_intent(task))
            .await
    }

    /// Where the intent to run `task` stands.
    pub(crate) async fn intent(&self, task: Cid) -> Result<Option<IntentState>, StoreError> {
        self.store.intent(task).await
    }

    /// Settles the intent to run `task` with the stored receipt `receipt`.
    pub(crate) async fn complete_intent(&self, task: Cid, receipt: Cid) -> Result<(), StoreError> {
        self.timed("complete_intent", self.store.complete_intent(task, receipt))
            .await
    }

    /// Records a job on `backend` whose final receipt is still owed.
    pub(crate) async fn put_job(
        &self,
        key: Cid,
        backend: &str,
        job: &str,
        payload: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.timed(
            "put_pending",
            self.store.put_pending(key, backend, job, payload),
        )
        .await
        .map(drop)
    }

    /// Every job whose final receipt is still owed, oldest first.
    pub(crate) async fn jobs(&self) -> Result<Vec<JobEntry>, StoreError> {
        self.store.pending().await
    }

    /// Forgets the job recorded under `key`.
    pub(crate) async fn remove_job(&self, key: Cid) -> Result<(), StoreError> {
        self.timed("remove_pending", self.store.remove_pending(key))
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
