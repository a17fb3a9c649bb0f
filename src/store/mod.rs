//! The gateway's durable state behind one contract: signed receipts and the names they can be found
//! under, content-addressed blobs, replay-protection keys, revocations, intents for tasks that must
//! never run twice, jobs awaiting an external backend, delegations kept so invocations can cite
//! them by CID, and what delegation quotas have used.
//!
//! The store knows nothing of HTTP or of UCAN semantics. It keeps opaque token bytes indexed by CIDs and
//! a little metadata the caller computes (task id, work id, whether the task is pure, whether it
//! succeeded).
//!
//! **Writes are commits.** Everything an answer depends on is written by one [`Store::commit`]: a
//! replay key, a receipt and its aliases, a revocation, an intent or its completion, pending jobs
//! added or removed — all of it durable together, or none of it. The gateway's hot path is one
//! commit per invocation: the replay key and the receipt together, so an invocation is never left
//! marked as seen without an answer.
//!
//! Three rules hold for every backend:
//! - **Nothing stored is ever replaced by a later write.** Writing a key again with the same data is a
//!   no-op; with different data it is a [`StoreErrorKind::Conflict`] and nothing of the commit is
//!   written. The only updates in place are completing an open intent and leasing a job.
//! - **A replay key is claimed once.** Of any number of commits claiming one key, on any number of
//!   processes sharing the store, exactly one is applied; the others are [`Outcome::Replayed`] and
//!   write nothing. Likewise one intent per task ([`Outcome::IntentExists`]).
//! - **Durable before it returns.** An `Ok` commit survives a crash (and, on SQLite, power loss).
//!
//! Reads are grouped by concept in small traits ([`ReceiptStore`], [`ReplayStore`],
//! [`RevocationStore`], [`BlobStore`], [`IntentStore`], [`JobStore`], [`ProofStore`],
//! [`QuotaStore`]); [`Store`] is all of them plus `commit`. A backend is one file (or folder)
//! implementing them; [`SqliteStore`] is the embedded one, [`PostgresStore`] the one several
//! gateway processes share, [`open`] picks one by URL, and the
//! same conformance suite (`tests/it/store/`) runs against every backend. Timestamps are Unix
//! seconds supplied by the caller (the unit UCAN uses), so tests control time and the store never
//! reads a clock.

mod postgres;
mod sqlite;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;

pub use postgres::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT, PostgresOptions,
    PostgresStore,
};
pub use sqlite::{SqliteStore, Tuning as SqliteTuning};

/// The store URLs [`open`] knows, for messages.
pub const STORE_URLS: &str = "sqlite:PATH, postgres://… or postgresql://…";

/// Opens the store `url` names: `sqlite:PATH` (a SQLite file, created if missing) or
/// `postgres://…`/`postgresql://…` (a PostgreSQL database, with the [`PostgresOptions`] query
/// parameters). Any other scheme is an [`StoreErrorKind::Open`] error naming the ones known.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        // `sqlite://PATH` too, as other tools write it.
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            let message = format!("sqlite: needs a path; the store is one of {STORE_URLS}");
            return Err(StoreError::new(StoreErrorKind::Open, "open", message));
        }
        return Ok(Arc::new(SqliteStore::open(Path::new(path)).await?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url).await?));
    }
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    Err(StoreError::new(
        StoreErrorKind::Open,
        "open",
        format!("unknown store {scheme:?}: the store is one of {STORE_URLS}"),
    ))
}

/// The store `serve` uses when none is named: SQLite in the data directory.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite:{}", data_dir.join("gateway.db").display())
}

/// Counts of the commits other processes sharing a store announced (see [`Store::changes`]):
/// a value that changes whenever one stored a receipt or recorded a revocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Announcements of stored receipts or aliases.
    pub receipts: u64,
    /// Announcements of recorded revocations.
    pub revocations: u64,
}

impl Changes {
    /// Counts one of everything: announcements may have been lost, so everything is worth a look.
    pub fn missed(&mut self) {
        self.receipts += 1;
        self.revocations += 1;
    }
}

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

    /// The same kind, operation and message, without the backend's error (to hand one failure to
    /// several callers).
    pub fn summary(&self) -> Self {
        StoreError::new(self.kind, self.op, self.message.clone())
    }

    /// The same error, attributed to the operation `op`.
    pub fn in_op(mut self, op: &'static str) -> Self {
        self.op = op;
        self
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

/// An intent to run a destructive task, and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    /// The task.
    pub task: Cid,
    /// The invocation whose run it is (the one owed a receipt if the run was interrupted).
    pub invocation: Cid,
    /// Until when the run may still be going (Unix seconds): its start plus the task's timeout and
    /// some slack. An open intent past it was interrupted.
    pub until: i64,
    /// Open or completed.
    pub state: IntentState,
}

/// Everything one commit writes; see [`Store::commit`]. Build it with the `with_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// A replay key to claim and how long to keep it (`None`: forever). If it was claimed before,
    /// nothing of the commit is written.
    pub claim: Option<(Cid, Option<i64>)>,
    /// A receipt to store.
    pub receipt: Option<StoredReceipt>,
    /// Further names of stored receipts, `(alias, receipt)`: for example an effect's task id. The
    /// receipt must be stored, in this commit or before.
    pub aliases: Vec<(Cid, Cid)>,
    /// Blobs to store, by CID (the caller has checked that the CID matches).
    pub blobs: Vec<(Cid, Vec<u8>)>,
    /// A revocation: the delegation, the invocation that revoked it, when.
    pub revocation: Option<(Cid, Cid, i64)>,
    /// An intent opened or completed.
    pub intent: Option<IntentChange>,
    /// Jobs to record as pending.
    pub add_jobs: Vec<JobEntry>,
    /// Pending jobs to forget, by key.
    pub remove_jobs: Vec<Cid>,
    /// Delegations to keep by CID. Unlike everything else in a commit, keeping them is best effort
    /// within a bound: one whose issuer already has [`Commit::proofs_per_issuer`] kept is left out,
    /// and the rest of the commit is written all the same.
    pub proofs: Vec<StoredDelegation>,
    /// How many delegations of one issuer may be kept at most (0: none of `proofs` is kept).
    pub proofs_per_issuer: usize,
    /// Quotas to charge. A charge that counts an invocation is applied only while its window has
    /// one left; if any has none, nothing of the commit is written ([`Outcome::QuotaExceeded`]):
    /// of any number of commits racing for a quota's last invocation, on any number of processes,
    /// exactly as many as it has left are applied. Metered use is added as it is.
    pub quotas: Vec<QuotaCharge>,
}

/// What one commit charges one quota: an invocation, counted exactly, and what a run consumed,
/// added whatever the window holds already (it has been consumed; only the next run can be
/// refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaCharge {
    /// What the quota belongs to (a delegation's CID).
    pub key: Cid,
    /// The start of the window being charged (Unix seconds).
    pub window: i64,
    /// The end of that window, after which its counts may be forgotten.
    pub until: i64,
    /// When this charge counts an invocation: how many the window allows. The commit adds one only
    /// while fewer have been counted. `None` counts none.
    pub invocations: Option<u64>,
    /// Metered use to add.
    pub metered: Metered,
}

/// What runs consume that is known only once they have run: added to a window's counts, never
/// refused by the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metered {
    /// Wasm fuel.
    pub fuel: u64,
    /// Run time, in milliseconds.
    pub cpu_ms: u64,
    /// Jobs handed to an external backend.
    pub jobs: u64,
}

impl Metered {
    /// Whether there is nothing to add.
    pub fn is_zero(&self) -> bool {
        *self == Metered::default()
    }
}

/// What one window of a quota has counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    /// Invocations.
    pub invocations: u64,
    /// Metered use.
    pub metered: Metered,
}

/// How a commit changes an intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentChange {
    /// Opens the intent to run `task` as `invocation`, which may run until `until`. If an intent
    /// for the task exists, nothing of the commit is written ([`Outcome::IntentExists`]).
    Open {
        /// The task.
        task: Cid,
        /// The invocation running it.
        invocation: Cid,
        /// Until when the run may still be going.
        until: i64,
    },
    /// Completes the open intent for `task` with `receipt`, which must be stored (in this commit
    /// or before). Completing it again with the same receipt is a no-op; with another, a conflict.
    Complete {
        /// The task.
        task: Cid,
        /// The receipt that settles it.
        receipt: Cid,
    },
}

impl Commit {
    /// Claims `key` until `until`.
    pub fn with_claim(mut self, key: Cid, until: Option<i64>) -> Self {
        self.claim = Some((key, until));
        self
    }

    /// Stores `receipt`.
    pub fn with_receipt(mut self, receipt: StoredReceipt) -> Self {
        self.receipt = Some(receipt);
        self
    }

    /// Opens or completes an intent.
    pub fn with_intent(mut self, change: IntentChange) -> Self {
        self.intent = Some(change);
        self
    }

    /// Records `job` as pending.
    pub fn with_job(mut self, job: JobEntry) -> Self {
        self.add_jobs.push(job);
        self
    }

    /// Forgets the pending job under `key`.
    pub fn without_job(mut self, key: Cid) -> Self {
        self.remove_jobs.push(key);
        self
    }

    /// Keeps `delegations`, as long as their issuer has fewer than `per_issuer` kept.
    pub fn with_proofs(mut self, delegations: Vec<StoredDelegation>, per_issuer: usize) -> Self {
        self.proofs = delegations;
        self.proofs_per_issuer = per_issuer;
        self
    }
}

/// A delegation kept so that invocations may cite it by CID alone, with the fields it is looked up
/// and purged by. The caller has checked that `cid` is the CID of `bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelegation {
    /// The delegation's CID.
    pub cid: Cid,
    /// Its issuer, whose count of kept delegations is capped.
    pub issuer: String,
    /// Its audience: a later delegation issued by this principal may rest on it.
    pub audience: String,
    /// Its expiry (`exp`) in Unix seconds; `None` when it never expires.
    pub expires_at: Option<i64>,
    /// The signed token, exactly as received.
    pub bytes: Vec<u8>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was written.
    Committed,
    /// The replay key was claimed before; nothing was written.
    Replayed,
    /// An intent for the task existed; nothing was written.
    IntentExists(Box<Intent>),
    /// This quota charge's window had no invocation left; nothing was written.
    QuotaExceeded(QuotaCharge),
}

/// Receipts and the names they are found under.
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// The latest receipt for the invocation with CID `ran`.
    async fn receipt_by_invocation(&self, ran: Cid) -> Result<Option<StoredReceipt>>;

    /// The latest receipt for the task `task_id`, whichever invocation ran it.
    async fn receipt_by_task(&self, task_id: Cid) -> Result<Option<StoredReceipt>>;

    /// The receipt whose own CID is `receipt_cid`.
    async fn receipt_by_cid(&self, receipt_cid: Cid) -> Result<Option<StoredReceipt>>;

    /// The latest successful receipt of a pure task with this work id, whose result may be reused
    /// instead of running the work again.
    async fn memoized(&self, work_id: Cid) -> Result<Option<StoredReceipt>>;

    /// A receipt found under `cid` taken, in this order of preference, as an invocation CID, a task id,
    /// a receipt CID, or an alias. The latest receipt wins within one kind of match.
    async fn receipt_by_any(&self, cid: Cid) -> Result<Option<StoredReceipt>>;

    /// The receipt CID the alias `alias` names.
    async fn alias(&self, alias: Cid) -> Result<Option<Cid>>;
}

/// Replay-protection keys.
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Whether `key` has been claimed.
    async fn seen(&self, key: Cid) -> Result<bool>;

    /// Forgets the keys whose expiry is before `now`, returning how many. The caller must only
    /// forget keys whose tokens can no longer be accepted (they have expired), or a replay would pass.
    async fn purge_seen(&self, now: i64) -> Result<u64>;
}

/// Revoked delegations.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Whether the delegation `delegation` has been revoked.
    async fn is_revoked(&self, delegation: Cid) -> Result<bool>;

    /// The revocations recorded after position `after` (0: all), with their positions, in order: a
    /// process learns of revocations other processes accepted by asking from the last it saw.
    async fn revocations_since(&self, after: u64) -> Result<Vec<(u64, Cid)>>;
}

/// Content-addressed blobs.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// The blob stored under `cid`.
    async fn get_blob(&self, cid: Cid) -> Result<Option<Vec<u8>>>;

    /// Whether a blob is stored under `cid`, without reading it.
    async fn has_blob(&self, cid: Cid) -> Result<bool>;
}

/// Intents to run destructive tasks.
#[async_trait]
pub trait IntentStore: Send + Sync {
    /// The intent for `task`, if one was opened.
    async fn intent(&self, task: Cid) -> Result<Option<Intent>>;

    /// The intents still open whose run may no longer be going (`until` before `now`): tasks
    /// that may or may not have run, whose invocations are owed a receipt.
    async fn interrupted(&self, now: i64) -> Result<Vec<Intent>>;
}

/// Jobs awaiting an external backend.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Every pending job, oldest first.
    async fn pending(&self) -> Result<Vec<JobEntry>>;

    /// Leases up to `limit` pending jobs to `holder` until `until`: those nobody holds, those
    /// whose lease ended before `now`, and those `holder` already holds (renewed). Oldest first.
    /// Of several processes leasing at once, each job goes to one.
    async fn lease_jobs(
        &self,
        holder: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<JobEntry>>;
}

/// Delegations kept by CID (proofs by reference). Expired and revoked ones are never returned, and
/// [`ProofStore::purge_proofs`] removes them.
#[async_trait]
pub trait ProofStore: Send + Sync {
    /// The kept delegations among `cids` still usable at `now`: not expired before `now`, not
    /// revoked. In no particular order; CIDs not kept are simply absent.
    async fn proofs(&self, cids: &[Cid], now: i64) -> Result<Vec<StoredDelegation>>;

    /// How many delegations issued by `issuer` are kept.
    async fn proofs_of(&self, issuer: &str) -> Result<u64>;

    /// Whether some kept delegation usable at `now` names `audience` as its audience.
    async fn delegated_to(&self, audience: &str, now: i64) -> Result<bool>;

    /// Forgets the delegations that expired before `before`, and those revoked, returning how
    /// many.
    async fn purge_proofs(&self, before: i64) -> Result<u64>;
}

/// What quotas have counted, by key and window.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// What `key`'s quota has counted in the window starting at `window` (nothing for a window
    /// never charged).
    async fn quota_used(&self, key: Cid, window: i64) -> Result<QuotaUsage>;

    /// Forgets the counts of windows that ended before `now`, returning how many.
    async fn purge_quotas(&self, now: i64) -> Result<u64>;
}

/// The gateway's durable store: every concept's reads and the one way to write. Object-safe, so
/// the gateway holds an `Arc<dyn Store>` and a backend is chosen at startup.
///
/// A write whose caller stops waiting may still be committed, so callers must not read a dropped
/// call as "did not happen". Lookups return `Ok(None)` when nothing matches; errors are reserved for
/// failures of the store itself.
#[async_trait]
pub trait Store:
    ReceiptStore
    + ReplayStore
    + RevocationStore
    + BlobStore
    + IntentStore
    + JobStore
    + ProofStore
    + QuotaStore
{
    /// Writes everything in `commit` in one durable transaction, or nothing: see the module docs
    /// for the rules. A receipt, alias or blob already stored with the same contents is a no-op.
    async fn commit(&self, commit: Commit) -> Result<Outcome>;

    /// A cheap query proving the database answers, for health checks.
    async fn health(&self) -> Result<()>;

    /// Closes the store, waiting for operations in flight. Later calls fail with
    /// [`StoreErrorKind::Unavailable`].
    async fn close(&self);

    /// Announcements of what every process sharing the store commits (this one included), as they
    /// arrive; `None` when the backend announces nothing, and a process learns of other processes'
    /// commits only by looking again.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<Changes>> {
        None
    }

    // Single writes, each one commit.

    /// Stores a receipt. `true` if it was not stored before.
    async fn put_receipt(&self, receipt: &StoredReceipt) -> Result<bool> {
        let new = self.receipt_by_cid(receipt.receipt_cid).await?.is_none();
        self.commit(Commit::default().with_receipt(receipt.clone()))
            .await
            .map_err(|e| e.in_op("put_receipt"))?;
        Ok(new)
    }

    /// Makes the stored receipt `receipt_cid` findable under `alias` too. `true` if new; an alias
    /// naming a different receipt is a conflict, an unknown receipt [`StoreErrorKind::NotFound`].
    async fn put_alias(&self, alias: Cid, receipt_cid: Cid) -> Result<bool> {
        let new = self.alias(alias).await?.is_none();
        let commit = Commit {
            aliases: vec![(alias, receipt_cid)],
            ..Commit::default()
        };
        self.commit(commit)
            .await
            .map_err(|e| e.in_op("put_alias"))?;
        Ok(new)
    }

    /// Stores a content-addressed blob. `true` if it was not stored before.
    async fn put_blob(&self, cid: Cid, bytes: &[u8]) -> Result<bool> {
        let new = !self.has_blob(cid).await?;
        let commit = Commit {
            blobs: vec![(cid, bytes.to_vec())],
            ..Commit::default()
        };
        self.commit(commit).await.map_err(|e| e.in_op("put_blob"))?;
        Ok(new)
    }

    /// Claims `key` until `expires_at`: `true` if it was not claimed before, `false` for a replay.
    async fn mark_seen(&self, key: Cid, expires_at: Option<i64>) -> Result<bool> {
        let outcome = self
            .commit(Commit::default().with_claim(key, expires_at))
            .await
            .map_err(|e| e.in_op("mark_seen"))?;
        Ok(outcome == Outcome::Committed)
    }

    /// Records that `delegation` was revoked by `revocation` at `at`. `true` if new; revoking
    /// again keeps the first record.
    async fn revoke(&self, delegation: Cid, revocation: Cid, at: i64) -> Result<bool> {
        let new = !self.is_revoked(delegation).await?;
        let commit = Commit {
            revocation: Some((delegation, revocation, at)),
            ..Commit::default()
        };
        self.commit(commit).await.map_err(|e| e.in_op("revoke"))?;
        Ok(new)
    }

    /// Records a job submitted to `backend` under `key`. `true` if new, `false` if the same job was
    /// already recorded; another job under the same key is a conflict.
    async fn put_pending(
        &self,
        key: Cid,
        backend: &str,
        job_id: &str,
        payload: Vec<u8>,
    ) -> Result<bool> {
        let new = !self.pending().await?.iter().any(|j| j.key == key);
        let job = JobEntry {
            key,
            backend: backend.to_owned(),
            job_id: job_id.to_owned(),
            payload,
        };
        self.commit(Commit::default().with_job(job))
            .await
            .map_err(|e| e.in_op("put_pending"))?;
        Ok(new)
    }

    /// Forgets the pending job under `key`. `true` if there was one.
    async fn remove_pending(&self, key: Cid) -> Result<bool> {
        let had = self.pending().await?.iter().any(|j| j.key == key);
        self.commit(Commit::default().without_job(key))
            .await
            .map_err(|e| e.in_op("remove_pending"))?;
        Ok(had)
    }
}
