//! The SQLite backend: one database file in WAL mode, one writer task and a few reader connections.
//!
//! **Durability.** The gateway commits a receipt, a replay key or an intent and only then answers, so a
//! commit must survive power loss, not just a process crash: otherwise an answered invocation could be
//! replayed, or a task that must run once could run again, after the machine restarts. WAL with
//! `synchronous=NORMAL` only syncs at checkpoints, so the last commits before a power cut can roll
//! back; we use `synchronous=FULL`, which syncs the WAL on every commit.
//!
//! **Group commit.** An fsync per write would cap the store at a few hundred writes a second on an
//! ordinary disk (one sync took ~2.5 ms where this was measured), far below the gateway's rate. So
//! every write goes to one writer task, which commits all the writes waiting at that moment in one
//! transaction, one fsync, and only then answers each caller. A caller alone waits for one commit, as
//! before; many callers share each commit. SQLite admits one writer anyway, and one task in front of
//! it queues writers in memory rather than in the busy handler's sleep-and-retry, and makes each
//! check-and-insert trivially serial. Readers have their own pool and see every committed write.
//!
//! **One statement per write.** Each write is a single statement (`INSERT … ON CONFLICT DO NOTHING`
//! where new-versus-seen matters), so "was this new?" is answered by the statement that records it,
//! and there are no read-then-write races. A statement that fails on its own (a foreign key, say) is
//! undone alone and its caller gets the error; a failure that can spoil the transaction (I/O, a full
//! disk) fails the whole batch, none of which was answered yet. An insert that changed nothing is then
//! examined, off the hot path, to tell a harmless repeat from a real conflict. sqlx prepares each
//! statement once per connection and caches it.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;
use sqlx::Row;
use sqlx::error::ErrorKind as DbErrorKind;
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use super::{IntentState, JobEntry, Result, Store, StoreError, StoreErrorKind, StoredReceipt};

/// The schema, embedded at build time and applied on open.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for a lock held by another process before failing as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read waits for a free connection before failing as unavailable, so an overloaded
/// gateway answers "unavailable" instead of piling up requests.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most writes one commit carries, which bounds how long the write lock is held.
const BATCH: usize = 256;
/// Writes waiting for the writer task; beyond this, writers wait for room.
const QUEUE: usize = 4 * BATCH;
/// Reader connections: enough to overlap lookups with the writer on a small machine.
const READERS: u32 = 4;

/// A receipt lookup: the columns [`receipt_from_row`] reads, in its order, filtered by `$filter`;
/// with `latest`, only the latest match (by issue time, then insertion).
macro_rules! receipts {
    ($filter:literal) => {
        concat!(
            "SELECT receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes FROM receipts ",
            $filter
        )
    };
    ($filter:literal, latest) => {
        receipts!($filter, "ORDER BY created_at DESC, seq DESC LIMIT 1")
    };
    ($filter:literal, $order:literal) => {
        concat!(receipts!($filter), " ", $order)
    };
}

const INSERT_RECEIPT: &str = "INSERT INTO receipts \
    (receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";
const RECEIPT_BY_CID: &str = receipts!("WHERE receipt_cid = ?");
const RECEIPT_BY_RAN: &str = receipts!("WHERE ran = ?", latest);
const RECEIPT_BY_TASK: &str = receipts!("WHERE task_id = ?", latest);
// The conditions repeat the partial index's `WHERE` so SQLite can use it.
const MEMOIZED: &str = receipts!("WHERE work_id = ? AND ok = 1 AND pure = 1", latest);
// One statement, so one snapshot and one round trip; each `OR` arm has its own index.
const RECEIPT_BY_ANY: &str = receipts!(
    "WHERE ran = ?1 OR task_id = ?1 OR receipt_cid = ?1 \
     OR receipt_cid IN (SELECT receipt_cid FROM receipt_aliases WHERE alias = ?1)",
    "ORDER BY CASE WHEN ran = ?1 THEN 0 WHEN task_id = ?1 THEN 1 WHEN receipt_cid = ?1 THEN 2 \
     ELSE 3 END, created_at DESC, seq DESC LIMIT 1"
);

const GET_BLOB: &str = "SELECT bytes FROM blobs WHERE cid = ?";
const HAS_BLOB: &str = "SELECT 1 FROM blobs WHERE cid = ?";
const ALIAS: &str = "SELECT receipt_cid FROM receipt_aliases WHERE alias = ?";
const PURGE_SEEN: &str = "DELETE FROM seen WHERE expires_at < ?";
const IS_REVOKED: &str = "SELECT 1 FROM revocations WHERE delegation = ?";
const INTENT: &str = "SELECT receipt_cid FROM intents WHERE task_key = ?";
const OPEN_INTENTS: &str = "SELECT task_key FROM intents WHERE receipt_cid IS NULL";
const PENDING_JOB: &str = "SELECT key, backend, job_id, payload FROM pending_jobs WHERE key = ?";

/// A [`Store`] in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The writer task's queue.
    writes: mpsc::Sender<Message>,
    /// Exactly one connection, used by the writer task (and health checks) only.
    writer: SqlitePool,
    /// Lookups; the same pool as `writer` for an in-memory database, which is private to a connection.
    reader: SqlitePool,
}

/// A statement with its arguments bound, ready to run.
type Statement = Query<'static, Sqlite, SqliteArguments>;

/// What the writer task receives.
enum Message {
    /// A write: its operation's name, the statement, and where to send the rows it changed once
    /// committed.
    Write(&'static str, Statement, oneshot::Sender<Result<u64>>),
    /// Finish the queued writes, then stop and say so.
    Close(oneshot::Sender<()>),
}

/// `sql` with one CID bound.
fn by_cid(sql: &'static str, cid: Cid) -> Statement {
    sqlx::query(sql).bind(cid.to_bytes())
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its parent directory if needed, and brings
    /// the schema up to date. Fails with [`StoreErrorKind::Migrate`] if the database was written by a
    /// build with migrations this one does not know. Must run on a Tokio runtime, which then hosts
    /// the writer task.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?;
        }
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full);

        // The writer opens first: it creates the file, switches it to WAL (a persistent setting) and
        // migrates, so readers only ever see a complete schema.
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let writer = connect(1, writer_options).await?;
        migrate(&writer).await?;

        // `query_only` turns a write through a reader, which would bypass the writer task, into an
        // error instead of a lock fight.
        let reader = connect(READERS, base.pragma("query_only", "ON")).await?;
        Ok(SqliteStore::start(writer, reader))
    }

    /// A fresh in-memory database with the full schema, for tests. Its data lives as long as the store.
    pub async fn memory() -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let writer = connect(1, options).await?;
        migrate(&writer).await?;
        Ok(SqliteStore::start(writer.clone(), writer))
    }

    /// Spawns the writer task on the current Tokio runtime.
    fn start(writer: SqlitePool, reader: SqlitePool) -> Self {
        let (writes, queue) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(writer.clone(), queue));
        SqliteStore {
            writes,
            writer,
            reader,
        }
    }

    /// Runs a write in the next group commit, returning how many rows it changed once committed.
    async fn write(&self, op: &'static str, statement: Statement) -> Result<u64> {
        let (done, answer) = oneshot::channel();
        let closed = || StoreError::new(StoreErrorKind::Unavailable, op, "the store is closed");
        let message = Message::Write(op, statement, done);
        self.writes.send(message).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// The first row of a read.
    async fn row(&self, op: &'static str, statement: Statement) -> Result<Option<SqliteRow>> {
        statement
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error(op))
    }

    /// Every CID in the first column of `sql`'s rows.
    async fn cids(&self, op: &'static str, sql: &'static str) -> Result<Vec<Cid>> {
        let rows = sqlx::query(sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error(op))?;
        rows.iter().map(|row| cid_column(op, row, 0)).collect()
    }

    /// The receipt `sql` finds with `cid` bound.
    async fn receipt(
        &self,
        op: &'static str,
        sql: &'static str,
        cid: Cid,
    ) -> Result<Option<StoredReceipt>> {
        let row = self.row(op, by_cid(sql, cid)).await?;
        row.map(|row| receipt_from_row(op, &row)).transpose()
    }
}

/// The writer task: takes every write waiting, commits them together, then answers each.
async fn write_loop(writer: SqlitePool, mut queue: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut closers = Vec::new();
    while queue.recv_many(&mut messages, BATCH).await > 0 {
        let (mut batch, mut waiting) = (Vec::new(), Vec::new());
        for message in messages.drain(..) {
            match message {
                Message::Write(op, statement, done) => {
                    batch.push((op, statement));
                    waiting.push((op, done));
                }
                Message::Close(done) => {
                    // Stop taking writes; those already queued are still received and committed.
                    queue.close();
                    closers.push(done);
                }
            }
        }
        match run_batch(&writer, batch).await {
            Ok(results) => {
                for ((_, done), result) in waiting.into_iter().zip(results) {
                    let _ = done.send(result);
                }
            }
            Err(e) => {
                for (op, done) in waiting {
                    let message = format!("nothing committed: {}", e.message);
                    let _ = done.send(Err(StoreError::new(e.kind, op, message)));
                }
            }
        }
    }
    for done in closers {
        let _ = done.send(());
    }
}

/// Runs `batch` in one transaction: each statement's own result, or why nothing was committed.
async fn run_batch(
    writer: &SqlitePool,
    batch: Vec<(&'static str, Statement)>,
) -> Result<Vec<Result<u64>>> {
    use StoreErrorKind::{Corrupt, Unavailable};
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    // IMMEDIATE takes the write lock up front, so no statement meets another writer mid-batch.
    let begin = writer.begin_with("BEGIN IMMEDIATE").await;
    let mut tx = begin.map_err(db_error("commit"))?;
    let mut results = Vec::with_capacity(batch.len());
    for (op, statement) in batch {
        let result = statement.execute(&mut *tx).await;
        let result = result
            .map(|done| done.rows_affected())
            .map_err(db_error(op));
        // A failure of the database itself (I/O, a full disk, a lost lock) may have rolled the whole
        // transaction back; dropping `tx` rolls back whatever is left. Anything else (a foreign
        // key, a constraint) undid only its own statement.
        match result {
            Err(e) if matches!(e.kind, Unavailable | Corrupt) => return Err(e),
            result => results.push(result),
        }
    }
    tx.commit().await.map_err(db_error("commit"))?;
    Ok(results)
}

/// A pool of `size` connections opened with `options`.
async fn connect(size: u32, options: SqliteConnectOptions) -> Result<SqlitePool> {
    SqlitePoolOptions::new()
        .max_connections(size)
        // Connections stay open: an in-memory database dies with its connection, and a file
        // database keeps its prepared statements.
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // An in-process database cannot have hung up; a ping per call would only add a round trip.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| {
            let kind = match classify(&e) {
                StoreErrorKind::Unavailable => StoreErrorKind::Unavailable,
                _ => StoreErrorKind::Open,
            };
            StoreError::with_source(kind, "open", e)
        })
}

/// Brings the schema up to date through the writer.
async fn migrate(writer: &SqlitePool) -> Result<()> {
    MIGRATOR
        .run(writer)
        .await
        .map_err(|e| StoreError::with_source(StoreErrorKind::Migrate, "open", e))
}

/// Settles an insert that changed nothing because `stored` was already under its key: writing the
/// same value again is a no-op (`Ok(false)`); a different value is a conflict, and the stored value
/// stays.
fn repeat_or_conflict<T: PartialEq<U>, U: ?Sized>(
    op: &'static str,
    stored: Option<T>,
    written: &U,
    describe: impl FnOnce(&T) -> String,
) -> Result<bool> {
    match stored {
        Some(stored) if stored == *written => Ok(false),
        Some(stored) => Err(StoreError::new(
            StoreErrorKind::Conflict,
            op,
            describe(&stored),
        )),
        // Nothing here deletes receipts, aliases, blobs or intents, so only a concurrent
        // `remove_pending` or another program writing to the file can get here.
        None => Err(StoreError::new(
            StoreErrorKind::Query,
            op,
            "the conflicting row vanished during the call; another program is writing to the database",
        )),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_receipt(&self, r: &StoredReceipt) -> Result<bool> {
        const OP: &str = "put_receipt";
        let insert = sqlx::query(INSERT_RECEIPT)
            .bind(r.receipt_cid.to_bytes())
            .bind(r.ran.to_bytes())
            .bind(r.task_id.to_bytes())
            .bind(r.work_id.map(|c| c.to_bytes()))
            .bind(r.ok)
            .bind(r.pure)
            .bind(r.created_at)
            .bind(r.bytes.clone());
        if self.write(OP, insert).await? == 1 {
            return Ok(true);
        }
        let stored = self.receipt_by_cid(r.receipt_cid).await?;
        repeat_or_conflict(OP, stored, r, |_| {
            format!("receipt {} is stored with other contents", r.receipt_cid)
        })
    }

    async fn receipt_by_invocation(&self, ran: Cid) -> Result<Option<StoredReceipt>> {
        let op = "receipt_by_invocation";
        self.receipt(op, RECEIPT_BY_RAN, ran).await
    }

    async fn receipt_by_task(&self, task_id: Cid) -> Result<Option<StoredReceipt>> {
        let op = "receipt_by_task";
        self.receipt(op, RECEIPT_BY_TASK, task_id).await
    }

    async fn receipt_by_cid(&self, receipt_cid: Cid) -> Result<Option<StoredReceipt>> {
        let op = "receipt_by_cid";
        self.receipt(op, RECEIPT_BY_CID, receipt_cid).await
    }

    async fn memoized(&self, work_id: Cid) -> Result<Option<StoredReceipt>> {
        self.receipt("memoized", MEMOIZED, work_id).await
    }

    async fn put_alias(&self, alias: Cid, receipt_cid: Cid) -> Result<bool> {
        const OP: &str = "put_alias";
        let sql =
            "INSERT INTO receipt_aliases (alias, receipt_cid) VALUES (?, ?) ON CONFLICT DO NOTHING";
        let insert = by_cid(sql, alias).bind(receipt_cid.to_bytes());
        if self.write(OP, insert).await? == 1 {
            return Ok(true);
        }
        let row = self.row(OP, by_cid(ALIAS, alias)).await?;
        let stored = row.map(|row| cid_column(OP, &row, 0)).transpose()?;
        repeat_or_conflict(OP, stored, &receipt_cid, |stored| {
            format!("alias {alias} already names receipt {stored}")
        })
    }

    async fn receipt_by_any(&self, cid: Cid) -> Result<Option<StoredReceipt>> {
        self.receipt("receipt_by_any", RECEIPT_BY_ANY, cid).await
    }

    async fn put_blob(&self, cid: Cid, bytes: &[u8]) -> Result<bool> {
        const OP: &str = "put_blob";
        let sql = "INSERT INTO blobs (cid, bytes) VALUES (?, ?) ON CONFLICT DO NOTHING";
        if self.write(OP, by_cid(sql, cid).bind(bytes)).await? == 1 {
            return Ok(true);
        }
        let stored = self.get_blob(cid).await?;
        repeat_or_conflict(OP, stored, bytes, |_| {
            format!("blob {cid} is stored with other bytes")
        })
    }

    async fn get_blob(&self, cid: Cid) -> Result<Option<Vec<u8>>> {
        let row = self.row("get_blob", by_cid(GET_BLOB, cid)).await?;
        row.map(|row| row.try_get(0).map_err(db_error("get_blob")))
            .transpose()
    }

    async fn has_blob(&self, cid: Cid) -> Result<bool> {
        let row = self.row("has_blob", by_cid(HAS_BLOB, cid)).await?;
        Ok(row.is_some())
    }

    async fn mark_seen(&self, key: Cid, expires_at: Option<i64>) -> Result<bool> {
        let sql = "INSERT INTO seen (key, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING";
        let insert = by_cid(sql, key).bind(expires_at);
        Ok(self.write("mark_seen", insert).await? == 1)
    }

    async fn purge_seen(&self, now: i64) -> Result<u64> {
        let delete = sqlx::query(PURGE_SEEN).bind(now);
        self.write("purge_seen", delete).await
    }

    async fn revoke(&self, delegation: Cid, revocation: Cid, at: i64) -> Result<bool> {
        let sql = "INSERT INTO revocations (delegation, revocation, revoked_at) VALUES (?, ?, ?) \
                   ON CONFLICT DO NOTHING";
        let insert = by_cid(sql, delegation).bind(revocation.to_bytes()).bind(at);
        Ok(self.write("revoke", insert).await? == 1)
    }

    async fn is_revoked(&self, delegation: Cid) -> Result<bool> {
        let row = self
            .row("is_revoked", by_cid(IS_REVOKED, delegation))
            .await?;
        Ok(row.is_some())
    }

    async fn revoked(&self) -> Result<Vec<Cid>> {
        self.cids("revoked", "SELECT delegation FROM revocations")
            .await
    }

    async fn record_intent(&self, task_key: Cid) -> Result<bool> {
        let sql = "INSERT INTO intents (task_key) VALUES (?) ON CONFLICT DO NOTHING";
        Ok(self.write("record_intent", by_cid(sql, task_key)).await? == 1)
    }

    async fn complete_intent(&self, task_key: Cid, receipt_cid: Cid) -> Result<()> {
        const OP: &str = "complete_intent";
        let sql = "UPDATE intents SET receipt_cid = ? WHERE task_key = ? AND receipt_cid IS NULL";
        let update = by_cid(sql, receipt_cid).bind(task_key.to_bytes());
        if self.write(OP, update).await? == 1 {
            return Ok(());
        }
        let Some(state) = self.intent(task_key).await? else {
            let message = format!("no intent recorded for {task_key}");
            return Err(StoreError::new(StoreErrorKind::NotFound, OP, message));
        };
        let completed = IntentState::Completed {
            receipt: receipt_cid,
        };
        repeat_or_conflict(OP, Some(state), &completed, |_| {
            format!("intent {task_key} was completed by another receipt")
        })
        .map(drop)
    }

    async fn intent(&self, task_key: Cid) -> Result<Option<IntentState>> {
        const OP: &str = "intent";
        let Some(row) = self.row(OP, by_cid(INTENT, task_key)).await? else {
            return Ok(None);
        };
        let receipt: Option<Vec<u8>> = row.try_get(0).map_err(db_error(OP))?;
        Ok(Some(match receipt {
            None => IntentState::Open,
            Some(bytes) => IntentState::Completed {
                receipt: decode_cid(OP, &bytes)?,
            },
        }))
    }

    async fn open_intents(&self) -> Result<Vec<Cid>> {
        self.cids("open_intents", OPEN_INTENTS).await
    }

    async fn put_pending(
        &self,
        key: Cid,
        backend: &str,
        job_id: &str,
        payload: Vec<u8>,
    ) -> Result<bool> {
        const OP: &str = "put_pending";
        let sql = "INSERT INTO pending_jobs (key, backend, job_id, payload) VALUES (?, ?, ?, ?) \
                   ON CONFLICT DO NOTHING";
        let insert = by_cid(sql, key)
            .bind(backend.to_owned())
            .bind(job_id.to_owned())
            .bind(payload.clone());
        if self.write(OP, insert).await? == 1 {
            return Ok(true);
        }
        let row = self.row(OP, by_cid(PENDING_JOB, key)).await?;
        let stored = row.map(|row| pending_from_row(OP, &row)).transpose()?;
        let job = JobEntry {
            key,
            backend: backend.to_owned(),
            job_id: job_id.to_owned(),
            payload,
        };
        repeat_or_conflict(OP, stored, &job, |stored| {
            let (id, backend) = (&stored.job_id, &stored.backend);
            format!("job {id} on {backend} is already pending under {key}")
        })
    }

    async fn pending(&self) -> Result<Vec<JobEntry>> {
        const OP: &str = "pending";
        let sql = "SELECT key, backend, job_id, payload FROM pending_jobs ORDER BY seq";
        let rows = sqlx::query(sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error(OP))?;
        rows.iter().map(|row| pending_from_row(OP, row)).collect()
    }

    async fn remove_pending(&self, key: Cid) -> Result<bool> {
        let delete = by_cid("DELETE FROM pending_jobs WHERE key = ?", key);
        Ok(self.write("remove_pending", delete).await? == 1)
    }

    async fn health(&self) -> Result<()> {
        // The writer's connection too: a stuck writer is as unhealthy as a stuck reader.
        for pool in [&self.reader, &self.writer] {
            let ping = sqlx::query("SELECT 1").fetch_one(pool).await;
            ping.map_err(db_error("health"))?;
        }
        Ok(())
    }

    async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.writes.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        // Readers first, so the writer is the last connection and checkpoints the WAL into the file.
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// A receipt row, its columns in [`receipts!`] order.
fn receipt_from_row(op: &'static str, row: &SqliteRow) -> Result<StoredReceipt> {
    let work_id: Option<Vec<u8>> = row.try_get(3).map_err(db_error(op))?;
    Ok(StoredReceipt {
        receipt_cid: cid_column(op, row, 0)?,
        ran: cid_column(op, row, 1)?,
        task_id: cid_column(op, row, 2)?,
        work_id: work_id.map(|b| decode_cid(op, &b)).transpose()?,
        ok: row.try_get(4).map_err(db_error(op))?,
        pure: row.try_get(5).map_err(db_error(op))?,
        created_at: row.try_get(6).map_err(db_error(op))?,
        bytes: row.try_get(7).map_err(db_error(op))?,
    })
}

/// A pending-job row: key, backend, job id, payload.
fn pending_from_row(op: &'static str, row: &SqliteRow) -> Result<JobEntry> {
    Ok(JobEntry {
        key: cid_column(op, row, 0)?,
        backend: row.try_get(1).map_err(db_error(op))?,
        job_id: row.try_get(2).map_err(db_error(op))?,
        payload: row.try_get(3).map_err(db_error(op))?,
    })
}

/// The CID stored in column `index` of `row`.
fn cid_column(op: &'static str, row: &SqliteRow, index: usize) -> Result<Cid> {
    let bytes: &[u8] = row.try_get(index).map_err(db_error(op))?;
    decode_cid(op, bytes)
}

/// A CID from its stored binary form; anything else in a CID column means the file was damaged or
/// written by something other than this store.
fn decode_cid(op: &'static str, bytes: &[u8]) -> Result<Cid> {
    let cid = Cid::try_from(bytes)
        .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupt, op, e))?;
    // `try_from` stops at the end of the CID; trailing bytes are damage too.
    if cid.encoded_len() != bytes.len() {
        let message = "trailing bytes after a stored CID";
        return Err(StoreError::new(StoreErrorKind::Corrupt, op, message));
    }
    Ok(cid)
}

/// Maps a database error of operation `op`.
fn db_error(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::with_source(classify(&e), op, e)
}

/// Sorts a database error into transient trouble (worth a retry), damage, a reference to something
/// not stored, or a rejected statement.
fn classify(e: &sqlx::Error) -> StoreErrorKind {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Io(_) => {
            StoreErrorKind::Unavailable
        }
        E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) => StoreErrorKind::Corrupt,
        // The only foreign keys point at receipts: an alias or intent completion naming a receipt
        // that is not stored.
        E::Database(db) if db.kind() == DbErrorKind::ForeignKeyViolation => {
            StoreErrorKind::NotFound
        }
        E::Database(db) => {
            // SQLite reports extended result codes; the primary code is the low byte.
            let code = db.code().and_then(|c| c.parse::<i32>().ok());
            match code.map(|c| c & 0xff) {
                // BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN
                Some(5 | 6 | 7 | 8 | 10 | 13 | 14) => StoreErrorKind::Unavailable,
                // CORRUPT, NOTADB
                Some(11 | 26) => StoreErrorKind::Corrupt,
                _ => StoreErrorKind::Query,
            }
        }
        _ => StoreErrorKind::Query,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{RAW, cid_for};

    /// SQLite's plan for `sql`, one line per step.
    async fn plan(store: &SqliteStore, sql: &str) -> String {
        let mut explain = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        if sql.contains('?') {
            explain = explain.bind(cid_for(RAW, b"x").to_bytes());
        }
        let rows = explain.fetch_all(&store.reader).await.unwrap();
        let steps: Vec<String> = rows.iter().map(|row| row.get("detail")).collect();
        steps.join("\n")
    }

    /// Every lookup searches an index, so none slows down as receipts and keys accumulate. The one
    /// scan is of a partial index holding only open intents.
    #[tokio::test]
    async fn lookups_use_indexes() {
        let store = SqliteStore::memory().await.unwrap();
        let any = "MULTI-INDEX OR\nINDEX 1\nSEARCH receipts USING INDEX receipts_by_ran (ran=?)\n\
                   INDEX 2\nSEARCH receipts USING INDEX receipts_by_task (task_id=?)\n\
                   INDEX 3\nSEARCH receipts USING INDEX sqlite_autoindex_receipts_1 (receipt_cid=?)\n\
                   INDEX 4\nLIST SUBQUERY 1\nSEARCH receipt_aliases USING PRIMARY KEY (alias=?)";
        let lookups = [
            (
                RECEIPT_BY_CID,
                "SEARCH receipts USING INDEX sqlite_autoindex_receipts_1",
            ),
            (
                RECEIPT_BY_RAN,
                "SEARCH receipts USING INDEX receipts_by_ran",
            ),
            (
                RECEIPT_BY_TASK,
                "SEARCH receipts USING INDEX receipts_by_task",
            ),
            (MEMOIZED, "SEARCH receipts USING INDEX receipts_memo"),
            (RECEIPT_BY_ANY, any),
            (ALIAS, "SEARCH receipt_aliases USING PRIMARY KEY"),
            (
                GET_BLOB,
                "SEARCH blobs USING INDEX sqlite_autoindex_blobs_1",
            ),
            (
                HAS_BLOB,
                "SEARCH blobs USING COVERING INDEX sqlite_autoindex_blobs_1",
            ),
            (
                PURGE_SEEN,
                "SEARCH seen USING COVERING INDEX seen_by_expiry",
            ),
            (IS_REVOKED, "SEARCH revocations USING PRIMARY KEY"),
            (INTENT, "SEARCH intents USING PRIMARY KEY"),
            (OPEN_INTENTS, "SCAN intents USING INDEX intents_open"),
            (
                PENDING_JOB,
                "SEARCH pending_jobs USING INDEX sqlite_autoindex_pending_jobs_1",
            ),
        ];
        for (sql, expected) in lookups {
            let plan = plan(&store, sql).await;
            assert!(plan.starts_with(expected), "{sql}\n{plan}");
        }
    }

    #[test]
    fn damaged_cids_are_corrupt() {
        let good = cid_for(RAW, b"x");
        let bytes = good.to_bytes();
        assert_eq!(decode_cid("t", &bytes).unwrap(), good);
        for bad in [Vec::new(), vec![0xff; 3], [bytes.as_slice(), &[0]].concat()] {
            let err = decode_cid("t", &bad).unwrap_err();
            assert_eq!(err.kind, StoreErrorKind::Corrupt);
        }
    }
}
