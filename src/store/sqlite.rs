//! The SQLite backend: one database file in WAL mode, a writer thread owning the one writing
//! connection, and a few reader connections (rusqlite, prepared statements cached per connection).
//!
//! Reads run on the calling thread, on one of a few reader connections: an indexed lookup in WAL
//! mode takes microseconds, less than handing it to another thread and back.
//!
//! **Durability.** The gateway commits a receipt, a replay key or an intent and only then answers, so a
//! commit must survive power loss, not just a process crash: otherwise an answered invocation could be
//! replayed, or a task that must run once could run again, after the machine restarts. WAL with
//! `synchronous=NORMAL` only syncs at checkpoints, so the last commits before a power cut can roll
//! back; we use `synchronous=FULL`, which syncs the WAL on every commit.
//!
//! **Group commit.** An fsync per commit would cap the store at a few thousand commits a second. So
//! every commit goes to the writer thread, which runs all the commits waiting at that moment in one
//! transaction, each inside a savepoint of its own, syncs once, and only then answers each caller. A
//! commit that is refused (a replay, an existing intent, a conflict) rolls back to its savepoint and
//! leaves the others alone; a failure of the database itself (I/O, a full disk) fails the whole
//! batch, none of which was answered yet.
//!
//! **Why rusqlite on threads of our own.** Measured with `examples/store_bench` on the same machine:
//! the earlier sqlx store, where each statement was a round trip to sqlx's worker, reached about
//! 2,000 invocation commits/s at 32 callers; a statement here is a direct call on a cached
//! prepared statement, and the batch costs one channel message per commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

mod absent;
mod commit;
mod proofs;
mod quotas;
mod rows;
mod schema;
mod vfs;
mod writer;

use self::absent::Absent;
use self::commit::apply;
use self::rows::{classify, db_error, decode_cid, intent_from_row, job_from_row, receipt_from_row};
use self::schema::{configure, connect, migrate};
use self::writer::{Checkpoints, Job, Message, Read, checkpointer, write_loop};

use super::{
    BlobStore, Commit, Intent, IntentChange, IntentState, IntentStore, JobEntry, JobStore, Outcome,
    ReceiptStore, ReplayStore, Result, RevocationStore, Store, StoreError, StoreErrorKind,
    StoredReceipt,
};

/// Reader threads: enough to overlap lookups with the writer on a small machine.
const READERS: usize = 4;

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

const RECEIPT_BY_CID: &str = receipts!("WHERE receipt_cid = ?1");
const RECEIPT_BY_RAN: &str = receipts!("WHERE ran = ?1", latest);
const RECEIPT_BY_TASK: &str = receipts!("WHERE task_id = ?1", latest);
// The conditions repeat the partial index's `WHERE` so SQLite can use it.
const MEMOIZED: &str = receipts!("WHERE work_id = ?1 AND ok = 1 AND pure = 1", latest);
// One statement, so one snapshot and one round trip; each `OR` arm has its own index.
const RECEIPT_BY_ANY: &str = receipts!(
    "WHERE ran = ?1 OR task_id = ?1 OR receipt_cid = ?1 \
     OR receipt_cid IN (SELECT receipt_cid FROM receipt_aliases WHERE alias = ?1)",
    "ORDER BY CASE WHEN ran = ?1 THEN 0 WHEN task_id = ?1 THEN 1 WHEN receipt_cid = ?1 THEN 2 \
     ELSE 3 END, created_at DESC, seq DESC LIMIT 1"
);
const INSERT_RECEIPT: &str = "INSERT INTO receipts \
    (receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING";
const CLAIM: &str = "INSERT INTO seen (key, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
const SEEN: &str = "SELECT 1 FROM seen WHERE key = ?1";
const PURGE_SEEN: &str = "DELETE FROM seen WHERE expires_at < ?1";
const ALIAS: &str = "SELECT receipt_cid FROM receipt_aliases WHERE alias = ?1";
const INSERT_ALIAS: &str =
    "INSERT INTO receipt_aliases (alias, receipt_cid) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
const GET_BLOB: &str = "SELECT bytes FROM blobs WHERE cid = ?1";
const HAS_BLOB: &str = "SELECT 1 FROM blobs WHERE cid = ?1";
const INSERT_BLOB: &str = "INSERT INTO blobs (cid, bytes) VALUES (?1, ?2) ON CONFLICT DO NOTHING";
const IS_REVOKED: &str = "SELECT 1 FROM revocations WHERE delegation = ?1";
const REVOCATIONS_SINCE: &str =
    "SELECT seq, delegation FROM revocations WHERE seq > ?1 ORDER BY seq";
const INSERT_REVOCATION: &str = "INSERT INTO revocations (delegation, revocation, revoked_at) \
    VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";
const INTENT: &str =
    "SELECT task_key, invocation, until_at, receipt_cid FROM intents WHERE task_key = ?1";
const INTERRUPTED: &str = "SELECT task_key, invocation, until_at, receipt_cid FROM intents \
    WHERE receipt_cid IS NULL AND until_at < ?1 ORDER BY until_at";
const OPEN_INTENT: &str = "INSERT INTO intents (task_key, invocation, until_at) VALUES (?1, ?2, ?3) \
    ON CONFLICT DO NOTHING";
const COMPLETE_INTENT: &str =
    "UPDATE intents SET receipt_cid = ?1 WHERE task_key = ?2 AND receipt_cid IS NULL";
const PENDING: &str = "SELECT key, backend, job_id, payload FROM pending_jobs ORDER BY seq";
const PENDING_JOB: &str = "SELECT key, backend, job_id, payload FROM pending_jobs WHERE key = ?1";
const INSERT_JOB: &str = "INSERT INTO pending_jobs (key, backend, job_id, payload) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";
const REMOVE_JOB: &str = "DELETE FROM pending_jobs WHERE key = ?1";
const LEASE_JOBS: &str = "UPDATE pending_jobs SET holder = ?1, lease_until = ?3 WHERE key IN \
    (SELECT key FROM pending_jobs WHERE holder IS NULL OR holder = ?1 OR lease_until < ?2 \
     ORDER BY seq LIMIT ?4) RETURNING seq, key, backend, job_id, payload";

/// A [`Store`] in a SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    writer: std_mpsc::Sender<Message>,
    /// Reader connections, used on the calling thread; empty in memory, where the writer's
    /// connection is the only one.
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    closed: AtomicBool,
    /// Dropped (with the store) to stop the checkpointer thread.
    _checkpoints: Option<Checkpoints>,
    /// What the replay-key and memo lookups can answer without SQL; none in memory.
    absent: Option<Arc<Absent>>,
}

/// How a SQLite store is tuned; [`SqliteStore::open`] takes the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// WAL frames (1 KiB pages) past which the writer finishes a checkpoint itself between two
    /// batches, so the WAL starts over from its beginning. The WAL file then stays within about
    /// this many KiB plus what one checkpoint interval writes. Each such checkpoint pauses
    /// commits while it copies what the checkpointer thread has not, so a lower bound costs
    /// throughput under heavy load (measured with `examples/store_bench`: 4,096 frames lost about
    /// a third of the commits per second at 256 callers, 65,536 about a sixth).
    pub wal_restart_frames: u64,
    /// How often the checkpointer thread copies committed WAL pages into the database file. A
    /// checkpoint copies only the newest frame of each page, and under load almost every batch
    /// writes the same pages again (the ends of the tables, the upper levels of every index):
    /// checkpointing once a second instead of ten times took a third of the checkpointer's CPU
    /// for the same commits (`docs/performance.md`). The bound above is checked against the
    /// checkpointer's last count, so the WAL may pass it by up to one interval's writes.
    pub checkpoint_every: Duration,
    /// Replay keys and reusable work ids the in-memory filters take before they are filled again
    /// from the tables (8 MiB each; see `src/store/sqlite/absent.rs`); 0 turns them off, and
    /// every lookup reads the database. With more than half this many stored, they turn
    /// themselves off.
    pub filter_capacity: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            wal_restart_frames: 65_536,
            checkpoint_every: Duration::from_secs(1),
            filter_capacity: absent::CAPACITY,
        }
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its parent directory if needed, and brings
    /// the schema up to date. Fails with [`StoreErrorKind::Migrate`] if the database was written by a
    /// build with migrations this one does not know.
    pub async fn open(path: &Path) -> Result<Self> {
        SqliteStore::open_tuned(path, Tuning::default()).await
    }

    /// [`SqliteStore::open`] with `tuning` instead of the defaults.
    pub async fn open_tuned(path: &Path, tuning: Tuning) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?;
        }
        let path = path.to_path_buf();
        let opened = path.clone();
        // Opening and migrating do file I/O; keep it off the async threads.
        let writer = tokio::task::spawn_blocking(move || {
            let conn = connect(&opened, true)?;
            migrate(&conn)?;
            Ok::<_, StoreError>(conn)
        })
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Open, "open", e.to_string()))??;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(connect(&path, false)?);
        }
        let checkpoints = checkpointer(connect(&path, true)?, tuning.checkpoint_every);
        let absent = (tuning.filter_capacity > 0).then(|| {
            let absent = Absent::new(path.clone(), tuning.filter_capacity);
            // Before the writer's first batch, as filling requires.
            absent.fill();
            absent
        });
        Ok(SqliteStore::start(
            Some(path),
            writer,
            readers,
            Some(checkpoints),
            absent,
            tuning,
        ))
    }

    /// A fresh in-memory database with the full schema, for tests. Its data lives as long as the store.
    pub async fn memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db_error("open"))?;
        configure(&conn, true).map_err(db_error("open"))?;
        migrate(&conn)?;
        Ok(SqliteStore::start(
            None,
            conn,
            Vec::new(),
            None,
            None,
            Tuning::default(),
        ))
    }

    fn start(
        path: Option<PathBuf>,
        writer: Connection,
        readers: Vec<Connection>,
        checkpoints: Option<Checkpoints>,
        absent: Option<Arc<Absent>>,
        tuning: Tuning,
    ) -> Self {
        let (tx, rx) = std_mpsc::channel();
        let wal_frames = checkpoints
            .as_ref()
            .map(|c| Arc::clone(&c.wal_frames))
            .unwrap_or_default();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn({
                let absent = absent.clone();
                move || write_loop(writer, rx, wal_frames, tuning.wal_restart_frames, absent)
            })
            .expect("spawning the store's writer thread");
        let readers = readers.into_iter().map(Mutex::new).collect();
        SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: tx,
                readers,
                next_reader: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                _checkpoints: checkpoints,
                absent,
            }),
        }
    }

    fn closed(op: &'static str) -> StoreError {
        StoreError::new(StoreErrorKind::Unavailable, op, "the store is closed")
    }

    /// Runs `f` on a reader's connection.
    async fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Self::closed(op));
        }
        let readers = &self.inner.readers;
        if readers.is_empty() {
            let (done, answer) = oneshot::channel();
            let read: Read = Box::new(move |conn| {
                let _ = done.send(f(conn));
            });
            self.inner
                .writer
                .send(Message::Read(read))
                .map_err(|_| Self::closed(op))?;
            return answer.await.map_err(|_| Self::closed(op))?;
        }
        // An indexed lookup in WAL mode takes microseconds: run it here rather than pay two thread
        // hand-offs for it. Any free connection will do; if none is, wait for the next one in turn.
        let start = self.inner.next_reader.fetch_add(1, Ordering::Relaxed);
        let free = (0..readers.len())
            .map(|k| &readers[(start + k) % readers.len()])
            .find_map(|conn| conn.try_lock().ok());
        let conn = match free {
            Some(conn) => conn,
            None => readers[start % readers.len()]
                .lock()
                .map_err(|_| Self::closed(op))?,
        };
        f(&conn)
    }

    /// Runs `work` as a write in the next batch, answering once the batch is durable; a result for
    /// which `keep` is false is rolled back alone.
    async fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        keep: fn(&T) -> bool,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Self::closed(op));
        }
        let (done, answer) = oneshot::channel::<Result<T>>();
        let job = Job {
            op,
            work: Some(work),
            result: None,
            done,
            keep,
        };
        self.inner
            .writer
            .send(Message::Write(Box::new(job)))
            .map_err(|_| Self::closed(op))?;
        answer.await.map_err(|_| Self::closed(op))?
    }

    /// The receipt `sql` finds with `cid` bound.
    async fn receipt(
        &self,
        op: &'static str,
        sql: &'static str,
        cid: Cid,
    ) -> Result<Option<StoredReceipt>> {
        self.read(op, move |conn| {
            conn.prepare_cached(sql)
                .and_then(|mut s| {
                    s.query_row([cid.to_bytes()], |row| Ok(receipt_from_row(row)))
                        .optional()
                })
                .map_err(db_error(op))?
                .transpose()
                .map_err(|e| e.in_op(op))
        })
        .await
    }

    /// Whether the filters say for certain that a lookup would find nothing (on an open store).
    fn lacks(&self, absent: impl FnOnce(&Absent) -> bool) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
            && self.inner.absent.as_deref().is_some_and(absent)
    }

    /// Whether `sql` finds a row with `cid` bound.
    async fn exists(&self, op: &'static str, sql: &'static str, cid: Cid) -> Result<bool> {
        self.read(op, move |conn| {
            conn.prepare_cached(sql)
                .and_then(|mut s| s.exists([cid.to_bytes()]))
                .map_err(db_error(op))
        })
        .await
    }
}

/// The CID in the first column of the row `sql` finds with `cid` bound.
fn cid_at(conn: &Connection, sql: &'static str, cid: Cid) -> Result<Option<Cid>> {
    let bytes: Option<Vec<u8>> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row([cid.to_bytes()], |row| row.get(0)).optional())
        .map_err(db_error("commit"))?;
    bytes.map(|b| decode_cid("commit", &b)).transpose()
}

/// The intent for `task`.
fn intent_of(conn: &Connection, task: Cid) -> Result<Option<Intent>> {
    conn.prepare_cached(INTENT)
        .and_then(|mut s| {
            s.query_row([task.to_bytes()], |row| Ok(intent_from_row(row)))
                .optional()
        })
        .map_err(db_error("intent"))?
        .transpose()
}

#[async_trait]
impl ReceiptStore for SqliteStore {
    async fn receipt_by_invocation(&self, ran: Cid) -> Result<Option<StoredReceipt>> {
        self.receipt("receipt_by_invocation", RECEIPT_BY_RAN, ran)
            .await
    }

    async fn receipt_by_task(&self, task_id: Cid) -> Result<Option<StoredReceipt>> {
        self.receipt("receipt_by_task", RECEIPT_BY_TASK, task_id)
            .await
    }

    async fn receipt_by_cid(&self, receipt_cid: Cid) -> Result<Option<StoredReceipt>> {
        self.receipt("receipt_by_cid", RECEIPT_BY_CID, receipt_cid)
            .await
    }

    async fn memoized(&self, work_id: Cid) -> Result<Option<StoredReceipt>> {
        if self.lacks(|a| a.lacks_work(&work_id)) {
            return Ok(None);
        }
        self.receipt("memoized", MEMOIZED, work_id).await
    }

    async fn receipt_by_any(&self, cid: Cid) -> Result<Option<StoredReceipt>> {
        self.receipt("receipt_by_any", RECEIPT_BY_ANY, cid).await
    }

    async fn alias(&self, alias: Cid) -> Result<Option<Cid>> {
        self.read("alias", move |conn| cid_at(conn, ALIAS, alias))
            .await
    }
}

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn seen(&self, key: Cid) -> Result<bool> {
        if self.lacks(|a| a.lacks_key(&key)) {
            return Ok(false);
        }
        self.exists("seen", SEEN, key).await
    }

    async fn purge_seen(&self, now: i64) -> Result<u64> {
        self.write(
            "purge_seen",
            |_| true,
            move |conn| {
                conn.prepare_cached(PURGE_SEEN)
                    .and_then(|mut s| s.execute([now]))
                    .map(|n| n as u64)
                    .map_err(db_error("purge_seen"))
            },
        )
        .await
    }
}

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn is_revoked(&self, delegation: Cid) -> Result<bool> {
        self.exists("is_revoked", IS_REVOKED, delegation).await
    }

    async fn revocations_since(&self, after: u64) -> Result<Vec<(u64, Cid)>> {
        const OP: &str = "revocations_since";
        self.read(OP, move |conn| {
            let mut statement = conn
                .prepare_cached(REVOCATIONS_SINCE)
                .map_err(db_error(OP))?;
            let rows = statement
                .query_map([i64::try_from(after).unwrap_or(i64::MAX)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(db_error(OP))?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, bytes) = row.map_err(db_error(OP))?;
                out.push((u64::try_from(seq).unwrap_or(0), decode_cid(OP, &bytes)?));
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl BlobStore for SqliteStore {
    async fn get_blob(&self, cid: Cid) -> Result<Option<Vec<u8>>> {
        self.read("get_blob", move |conn| {
            conn.prepare_cached(GET_BLOB)
                .and_then(|mut s| s.query_row([cid.to_bytes()], |row| row.get(0)).optional())
                .map_err(db_error("get_blob"))
        })
        .await
    }

    async fn has_blob(&self, cid: Cid) -> Result<bool> {
        self.exists("has_blob", HAS_BLOB, cid).await
    }
}

#[async_trait]
impl IntentStore for SqliteStore {
    async fn intent(&self, task: Cid) -> Result<Option<Intent>> {
        self.read("intent", move |conn| intent_of(conn, task)).await
    }

    async fn interrupted(&self, now: i64) -> Result<Vec<Intent>> {
        const OP: &str = "interrupted";
        self.read(OP, move |conn| {
            let mut statement = conn.prepare_cached(INTERRUPTED).map_err(db_error(OP))?;
            let rows = statement
                .query_map([now], |row| Ok(intent_from_row(row)))
                .map_err(db_error(OP))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(db_error(OP))?.map_err(|e| e.in_op(OP))?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn pending(&self) -> Result<Vec<JobEntry>> {
        const OP: &str = "pending";
        self.read(OP, move |conn| {
            let mut statement = conn.prepare_cached(PENDING).map_err(db_error(OP))?;
            let rows = statement
                .query_map([], |row| Ok(job_from_row(row, 0)))
                .map_err(db_error(OP))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(db_error(OP))?.map_err(|e| e.in_op(OP))?);
            }
            Ok(out)
        })
        .await
    }

    async fn lease_jobs(
        &self,
        holder: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<JobEntry>> {
        const OP: &str = "lease_jobs";
        let holder = holder.to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(
            OP,
            |_| true,
            move |conn| {
                let mut statement = conn.prepare_cached(LEASE_JOBS).map_err(db_error(OP))?;
                let rows = statement
                    .query_map(params![holder, now, until, limit], |row| {
                        Ok((row.get::<_, i64>(0)?, job_from_row(row, 1)))
                    })
                    .map_err(db_error(OP))?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, job) = row.map_err(db_error(OP))?;
                    out.push((seq, job.map_err(|e| e.in_op(OP))?));
                }
                out.sort_by_key(|(seq, _)| *seq);
                Ok(out.into_iter().map(|(_, job)| job).collect())
            },
        )
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, commit: Commit) -> Result<Outcome> {
        let applied = |outcome: &Outcome| *outcome == Outcome::Committed;
        let absent = self.inner.absent.clone();
        self.write("commit", applied, move |conn| {
            // On the writer thread, before the batch's COMMIT (see `absent`).
            if let Some(absent) = &absent {
                absent.add(&commit);
            }
            apply(conn, &commit)
        })
        .await
    }

    async fn health(&self) -> Result<()> {
        // The writer too: a stuck writer is as unhealthy as a stuck reader.
        self.read("health", |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(db_error("health"))
        })
        .await?;
        self.write(
            "health",
            |_| true,
            |conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(db_error("health"))
            },
        )
        .await
    }

    async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let (done, closed) = oneshot::channel();
        if self.inner.writer.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipld::{RAW, cid_for};

    /// SQLite's plan for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut statement = conn.prepare(&explain).unwrap();
        let n = statement.parameter_count();
        let x = cid_for(RAW, b"x").to_bytes();
        let params: Vec<&dyn rusqlite::ToSql> =
            (0..n).map(|_| &x as &dyn rusqlite::ToSql).collect();
        let rows = statement
            .query_map(params.as_slice(), |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// Every lookup searches an index, so none slows down as receipts and keys accumulate.
    #[test]
    fn lookups_use_indexes() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
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
            (SEEN, "SEARCH seen USING PRIMARY KEY"),
            (
                PURGE_SEEN,
                "SEARCH seen USING COVERING INDEX seen_by_expiry",
            ),
            (
                IS_REVOKED,
                "SEARCH revocations USING COVERING INDEX sqlite_autoindex_revocations_1",
            ),
            (
                REVOCATIONS_SINCE,
                "SEARCH revocations USING INTEGER PRIMARY KEY",
            ),
            (INTENT, "SEARCH intents USING PRIMARY KEY"),
            (INTERRUPTED, "SEARCH intents USING INDEX intents_open"),
            (
                PENDING_JOB,
                "SEARCH pending_jobs USING INDEX sqlite_autoindex_pending_jobs_1",
            ),
        ];
        for (sql, expected) in lookups {
            let plan = plan(&conn, sql);
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
