//! The gateway's durable state behind one small trait: signed receipts and the names they can be found
//! under, content-addressed blobs, replay-protection keys, revocations, intents for tasks that must
//! never run twice, and jobs awaiting an external backend.
//!
//! The store knows nothing of HTTP or of UCAN semantics. It keeps opaque token bytes indexed by CIDs and
//! a little metadata the caller computes (task id, work id, whether the task is pure, whether it
//! succeeded). Every write is committed durably before the call returns, so the gateway can answer a
//! request only after the state that justifies the answer is on disk.
//!
//! Two rules hold for every backend:
//! - **Nothing stored is ever replaced by a later write.** Writing a key again with the same data is a
//!   no-op (`Ok(false)`); with different data it is a [`StoreErrorKind::Conflict`] and the stored row
//!   stays as it was. The only update in place is completing an open intent.
//! - **Check-and-record is one atomic step.** [`Store::mark_seen`] and [`Store::record_intent`] answer
//!   "was this new?" from the same statement that records it, so two concurrent callers can never both
//!   be told "new".
//!
//! A backend is one file implementing [`Store`]; [`SqliteStore`] is the first. Timestamps are Unix
//! seconds supplied by the caller (the unit UCAN uses), so tests control time and the store never reads
//! a clock.

mod sqlite;

use std::fmt;

use async_trait::async_trait;
use cid::Cid;

pub use sqlite::SqliteStore;

/// The result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A signed receipt and the metadata it is looked up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// The CID of the signed receipt token in `bytes`.
    pub receipt_cid: Cid,
    /// The CID of the invocation the receipt answers (the receipt's `ran`).
    pub ran: Cid,
    /// The task id of that invocation; several invocations may share one.
    pub task_id: Cid,
    /// The work id (the task with its authority stripped), when the task has one.
    pub work_id: Option<Cid>,
    /// Whether the task succeeded (`out` is `ok`, not `error`).
    pub ok: bool,
    /// Whether the task is pure, so that its successful result may be reused for the same work id.
    pub pure: bool,
    /// When the receipt was issued, in Unix seconds; the latest receipt wins a lookup by task.
    pub created_at: i64,
    /// The signed receipt token, exactly as sent to clients.
    pub bytes: Vec<u8>,
}

/// Where an intent to run a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    /// Recorded but never completed: the task may have started before a crash, so it must not be
    /// started again.
    Open,
    /// Settled by the receipt with this CID.
    Completed {
        /// The CID of the receipt that settled the task.
        receipt: Cid,
    },
}

/// A job submitted to an external backend whose result is still awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEntry {
    /// The key the job is tracked under (typically the invocation or task CID).
    pub key: Cid,
    /// Which backend runs the job (for example `"bacalhau"`).
    pub backend: String,
    /// The backend's id for the job.
    pub job_id: String,
    /// Whatever the caller needs to finish the job once the result arrives.
    pub payload: Vec<u8>,
}

/// What went wrong in a store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The database could not be opened or created (path, permissions, not a database).
    Open,
    /// The schema could not be brought up to date, or the database was written by a newer build.
    Migrate,
    /// The database is busy, locked beyond the timeout, closed, or failing I/O. The operation did not
    /// happen and may be retried; a server answers "unavailable".
    Unavailable,
    /// A stored row could not be decoded (for example a CID column that is not a CID).
    Corrupt,
    /// The write would change data already stored under the same key; nothing was changed.
    Conflict,
    /// The operation refers to something that is not stored (an intent never recorded, or a receipt an
    /// alias or intent completion names).
    NotFound,
    /// The database rejected a statement for a reason none of the other kinds describe.
    Query,
}

impl StoreErrorKind {
    /// A short description for messages.
    pub fn describe(self) -> &'static str {
        match self {
            StoreErrorKind::Open => "cannot open the database",
            StoreErrorKind::Migrate => "cannot migrate the schema",
            StoreErrorKind::Unavailable => "database unavailable",
            StoreErrorKind::Corrupt => "stored data is corrupt",
            StoreErrorKind::Conflict => "conflicts with stored data",
            StoreErrorKind::NotFound => "not found",
            StoreErrorKind::Query => "statement failed",
        }
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A failed store operation: its kind, the operation, and what happened.
#[derive(Debug, thiserror::Error)]
#[error("store {op}: {kind}: {message}")]
#[non_exhaustive]
pub struct StoreError {
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// The operation that failed, named after the [`Store`] method (or `"open"`).
    pub op: &'static str,
    /// A human-readable explanation, including the database's own message when there is one.
    pub message: String,
    /// The backend's error, kept for logs and downcasting.
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error with no underlying backend error.
    pub fn new(kind: StoreErrorKind, op: &'static str, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            op,
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by a backend error, whose text becomes the message.
    pub fn with_source(
        kind: StoreErrorKind,
        op: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError {
            kind,
            op,
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }
}

/// The gateway's durable store. Object-safe, so the gateway holds an `Arc<dyn Store>` and a backend is
/// chosen at startup.
///
/// Every write is durable when it returns `Ok`; a write whose caller stops waiting may still be
/// committed, so callers must not read a dropped call as "did not happen". Lookups return `Ok(None)`
/// when nothing matches; errors are reserved for failures of the store itself.
#[async_trait]
pub trait Store: Send + Sync {
    // Receipts

    /// Stores a receipt. Returns `true` if it is new, `false` if the same receipt was already stored;
    /// a different receipt under the same receipt CID is a [`StoreErrorKind::Conflict`].
    async fn put_receipt(&self, receipt: &StoredReceipt) -> Result<bool>;

    /// The latest receipt for the invocation with CID `ran`.
    async fn receipt_by_invocation(&self, ran: Cid) -> Result<Option<StoredReceipt>>;

    /// The latest receipt for the task `task_id`, whichever invocation ran it.
    async fn receipt_by_task(&self, task_id: Cid) -> Result<Option<StoredReceipt>>;

    /// The receipt whose own CID is `receipt_cid`.
    async fn receipt_by_cid(&self, receipt_cid: Cid) -> Result<Option<StoredReceipt>>;

    /// The latest successful receipt of a pure task with this work id, whose result may be reused
    /// instead of running the work again.
    async fn memoized(&self, work_id: Cid) -> Result<Option<StoredReceipt>>;

    /// Makes the stored receipt `receipt_cid` findable under `alias` too (for example an effect's task
    /// id). Returns `true` if new, `false` if the alias already named that receipt; an alias naming a
    /// different receipt is a [`StoreErrorKind::Conflict`], and an unknown receipt is
    /// [`StoreErrorKind::NotFound`].
    async fn put_alias(&self, alias: Cid, receipt_cid: Cid) -> Result<bool>;

    /// A receipt found under `cid` taken, in this order of preference, as an invocation CID, a task id,
    /// a receipt CID, or an alias. The latest receipt wins within one kind of match.
    async fn receipt_by_any(&self, cid: Cid) -> Result<Option<StoredReceipt>>;

    // Blobs

    /// Stores a content-addressed blob. Returns `true` if new, `false` if already stored with the same
    /// bytes; different bytes under the same CID are a [`StoreErrorKind::Conflict`]. The caller
    /// checks that `cid` matches `bytes` and enforces the size limit.
    async fn put_blob(&self, cid: Cid, bytes: &[u8]) -> Result<bool>;

    /// The blob stored under `cid`.
    async fn get_blob(&self, cid: Cid) -> Result<Option<Vec<u8>>>;

    /// Whether a blob is stored under `cid`, without reading it.
    async fn has_blob(&self, cid: Cid) -> Result<bool>;

    // Replay protection

    /// Records `key` and returns `true` if it was not recorded before, `false` if it was (a replay).
    /// Atomic: of any number of concurrent calls with one key, exactly one sees `true`. A recorded key
    /// stays recorded until [`Store::purge_seen`] removes it, even past `expires_at`; `None` means it is
    /// kept forever.
    async fn mark_seen(&self, key: Cid, expires_at: Option<i64>) -> Result<bool>;

    /// Forgets the keys whose `expires_at` is before `now`, returning how many. The caller must only
    /// forget keys whose tokens can no longer be accepted (they have expired), or a replay would pass.
    async fn purge_seen(&self, now: i64) -> Result<u64>;

    // Revocations

    /// Records that the delegation `delegation` was revoked by the invocation `revocation` at time `at`.
    /// Returns `true` if new; revoking again keeps the first record and returns `false`.
    async fn revoke(&self, delegation: Cid, revocation: Cid, at: i64) -> Result<bool>;

    /// Whether the delegation `delegation` has been revoked.
    async fn is_revoked(&self, delegation: Cid) -> Result<bool>;

    /// Every revoked delegation, to load an in-memory set at startup.
    async fn revoked(&self) -> Result<Vec<Cid>>;

    // Intents

    /// Records the intent to run the task `task_key` before running it. Returns `true` if newly
    /// recorded, `false` if an intent already existed (open or completed): the task must not start
    /// again. Atomic like [`Store::mark_seen`].
    async fn record_intent(&self, task_key: Cid) -> Result<bool>;

    /// Completes the open intent `task_key` with the receipt `receipt_cid`, which must already be
    /// stored ([`StoreErrorKind::NotFound`] otherwise, or when no intent was recorded). Completing it
    /// again with the same receipt is a no-op; with another receipt, a [`StoreErrorKind::Conflict`].
    async fn complete_intent(&self, task_key: Cid, receipt_cid: Cid) -> Result<()>;

    /// Where the intent `task_key` stands, if one was recorded.
    async fn intent(&self, task_key: Cid) -> Result<Option<IntentState>>;

    /// The intents never completed: after a crash, the tasks that may or may not have run.
    async fn open_intents(&self) -> Result<Vec<Cid>>;

    // Pending external jobs

    /// Records a job submitted to `backend` under `key`. Returns `true` if new, `false` if the same job
    /// was already recorded; another job under the same key is a [`StoreErrorKind::Conflict`] (remove
    /// the old one first).
    async fn put_pending(
        &self,
        key: Cid,
        backend: &str,
        job_id: &str,
        payload: Vec<u8>,
    ) -> Result<bool>;

    /// Every pending job, oldest first.
    async fn pending(&self) -> Result<Vec<JobEntry>>;

    /// Forgets the pending job under `key`. Returns whether there was one.
    async fn remove_pending(&self, key: Cid) -> Result<bool>;

    // Operations

    /// A cheap query proving the database answers, for health checks.
    async fn health(&self) -> Result<()>;

    /// Closes the store, waiting for operations in flight. Later calls fail with
    /// [`StoreErrorKind::Unavailable`].
    async fn close(&self);
}
