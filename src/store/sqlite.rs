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
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, params};
use tokio::sync::oneshot;

mod proofs;
mod quotas;

use super::{
    BlobStore, Commit, Intent, IntentChange, IntentState, IntentStore, JobEntry, JobStore, Outcome,
    ReceiptStore, ReplayStore, Result, RevocationStore, Store, StoreError, StoreErrorKind,
    StoredReceipt,
};

/// The schema, in order; `PRAGMA user_version` records how many are applied.
const MIGRATIONS: [&str; 4] = [
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_commits.sql"),
    include_str!("../../migrations/sqlite/0003_proofs.sql"),
    include_str!("../../migrations/sqlite/0004_quotas.sql"),
];

/// How long a statement waits for a lock held by another process before failing as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most commits one transaction carries, which bounds how long the write lock is held.
const BATCH: usize = 512;
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
    _checkpoints: Option<std_mpsc::Sender<()>>,
}

/// Work for a reader (or, in memory, the writer): runs on its connection.
type Read = Box<dyn FnOnce(&Connection) + Send>;

/// What the writer thread receives.
enum Message {
    /// A write (a commit, or purging keys, leasing jobs), run in the next batch.
    Write(Box<dyn Write>),
    /// A read, when the writer's connection is the only one.
    Read(Read),
    /// Finish the queued work, then stop and say so.
    Close(oneshot::Sender<()>),
}

/// A write run inside a batch, whose caller is answered once the batch is durable (or failed).
trait Write: Send {
    /// Runs the write in its savepoint: whether it stays, or the database itself failed (the
    /// whole batch is then rolled back).
    fn run(&mut self, conn: &Connection) -> Step;
    /// Answers the caller: with the write's own result, or with why the batch was not committed.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);
}

/// What running a write did to its savepoint.
enum Step {
    /// It stays.
    Keep,
    /// It is undone alone (a replay, a conflict).
    Undo,
    /// The database failed; nothing of the batch is committed.
    Fatal(StoreError),
}

/// A write of `T`, kept when it succeeds and `keep` says so.
struct Job<T, F> {
    op: &'static str,
    work: Option<F>,
    result: Option<Result<T>>,
    done: oneshot::Sender<Result<T>>,
    /// Whether a successful result stays (a commit refused as a replay does not).
    keep: fn(&T) -> bool,
}

impl<T: Send, F: FnOnce(&Connection) -> Result<T> + Send> Write for Job<T, F> {
    fn run(&mut self, conn: &Connection) -> Step {
        let Some(work) = self.work.take() else {
            return Step::Undo;
        };
        let result = work(conn);
        let step = match &result {
            Ok(value) if (self.keep)(value) => Step::Keep,
            Ok(_) => Step::Undo,
            Err(e) if is_fatal(e) => Step::Fatal(e.summary()),
            Err(_) => Step::Undo,
        };
        self.result = Some(result);
        step
    }

    fn answer(self: Box<Self>, failed: Option<&StoreError>) {
        let answer = match (failed, self.result) {
            (Some(e), _) => Err(nothing_committed(self.op, e)),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::new(
                StoreErrorKind::Unavailable,
                self.op,
                "nothing committed: not run",
            )),
        };
        let _ = self.done.send(answer);
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file and its parent directory if needed, and brings
    /// the schema up to date. Fails with [`StoreErrorKind::Migrate`] if the database was written by a
    /// build with migrations this one does not know.
    pub async fn open(path: &Path) -> Result<Self> {
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
        let checkpoints = checkpointer(connect(&path, true)?);
        Ok(SqliteStore::start(
            Some(path),
            writer,
            readers,
            Some(checkpoints),
        ))
    }

    /// A fresh in-memory database with the full schema, for tests. Its data lives as long as the store.
    pub async fn memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db_error("open"))?;
        configure(&conn, true).map_err(db_error("open"))?;
        migrate(&conn)?;
        Ok(SqliteStore::start(None, conn, Vec::new(), None))
    }

    fn start(
        path: Option<PathBuf>,
        writer: Connection,
        readers: Vec<Connection>,
        checkpoints: Option<std_mpsc::Sender<()>>,
    ) -> Self {
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer, rx))
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

/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies committed pages from the WAL into the database file on a thread of its own, every
/// [`CHECKPOINT_EVERY`], so commits never wait for it (the writer's own automatic checkpoint, which
/// would run inside a commit, is turned off). Passive: it never blocks the writer or readers. Stops
/// when the returned sender is dropped; closing the last connection checkpoints what is left.
fn checkpointer(conn: Connection) -> std_mpsc::Sender<()> {
    let (stop, stopped) = std_mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std_mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .expect("spawning the store's checkpoint thread");
    stop
}

/// Opens a connection to `path` with the settings every connection uses; the writer's may create
/// the file.
fn connect(path: &Path, writer: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        let kind = match classify(&e) {
            StoreErrorKind::Unavailable => StoreErrorKind::Unavailable,
            _ => StoreErrorKind::Open,
        };
        StoreError::with_source(kind, "open", e)
    })?;
    configure(&conn, writer)
        .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?;
    Ok(conn)
}

/// The settings of every connection. The writer switches the file to WAL (a persistent setting);
/// readers are `query_only`, so a write through one is an error instead of a lock fight.
fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Index pages stay in memory rather than being read back through system calls: the writer
    // revisits random leaves of every index on every commit. Reads of the database file map it.
    conn.pragma_update(None, "cache_size", if writer { -65_536 } else { -16_384 })?;
    conn.pragma_update(None, "mmap_size", 256 * 1024 * 1024)?;
    if writer {
        // Small pages: a commit dirties one leaf of each index it inserts into (the keys are
        // random CIDs), and each dirty page is written to the WAL whole, so the page size is most
        // of what a commit writes. Takes effect when the database is created.
        conn.pragma_update(None, "page_size", 1024)?;
        // Reading a non-database fails here, before anything is written to it.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        // The checkpointer thread does it, outside any commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    } else {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the schema up to date. A database made by the earlier sqlx-based store records its first
/// migration in `_sqlx_migrations`; it counts as applied.
fn migrate(conn: &Connection) -> Result<()> {
    let fail = |e: rusqlite::Error| StoreError::with_source(StoreErrorKind::Migrate, "open", e);
    let mut version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?
        .try_into()
        .unwrap_or(usize::MAX);
    if version == 0 {
        let legacy: Option<i64> = conn
            .query_row(
                "SELECT max(version) FROM _sqlx_migrations WHERE success",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None)
            .flatten();
        match legacy {
            Some(1) => version = 1,
            Some(_) => {
                return Err(StoreError::new(
                    StoreErrorKind::Migrate,
                    "open",
                    "the database was written by a build with migrations this one does not know",
                ));
            }
            None => {}
        }
    }
    if version > MIGRATIONS.len() {
        return Err(StoreError::new(
            StoreErrorKind::Migrate,
            "open",
            format!(
                "the database is at schema version {version}; this build knows {}",
                MIGRATIONS.len()
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let batch = format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        );
        if let Err(e) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(fail(e));
        }
    }
    Ok(())
}

/// The writer thread: takes every message waiting, runs the writes in one transaction, commits,
/// then answers each.
fn write_loop(conn: Connection, queue: std_mpsc::Receiver<Message>) {
    let mut closers = Vec::new();
    while closers.is_empty() {
        let Ok(first) = queue.recv() else { break };
        let mut writes: Vec<Box<dyn Write>> = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Write(write) => writes.push(write),
                Message::Read(read) => read(&conn),
                Message::Close(done) => closers.push(done),
            }
            if writes.len() < BATCH {
                next = queue.try_recv().ok();
            }
        }
        run_batch(&conn, writes);
    }
    drop(conn);
    for done in closers {
        let _ = done.send(());
    }
}

/// Runs `writes` in one transaction, each in a savepoint, and answers each once it is durable.
fn run_batch(conn: &Connection, mut writes: Vec<Box<dyn Write>>) {
    if writes.is_empty() {
        return;
    }
    let failed = transact(conn, &mut writes);
    for write in writes {
        write.answer(failed.as_ref());
    }
}

/// The batch's transaction: `None` once committed, or why nothing was.
fn transact(conn: &Connection, writes: &mut [Box<dyn Write>]) -> Option<StoreError> {
    let fail = |e: rusqlite::Error| StoreError::with_source(classify(&e), "commit", e);
    // Prepared once per connection: these run for every commit.
    let run = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
    };
    // IMMEDIATE takes the write lock up front, so no statement meets another writer mid-batch.
    if let Err(e) = run("BEGIN IMMEDIATE") {
        return Some(fail(e));
    }
    for write in writes.iter_mut() {
        let step = match run("SAVEPOINT w") {
            Ok(()) => write.run(conn),
            Err(e) => Step::Fatal(fail(e)),
        };
        let released = match step {
            Step::Keep => run("RELEASE w"),
            Step::Undo => run("ROLLBACK TO w").and_then(|()| run("RELEASE w")),
            Step::Fatal(e) => {
                let _ = run("ROLLBACK");
                return Some(e);
            }
        };
        if let Err(e) = released {
            let _ = run("ROLLBACK");
            return Some(fail(e));
        }
    }
    match run("COMMIT") {
        Ok(()) => None,
        Err(e) => {
            let _ = run("ROLLBACK");
            Some(fail(e))
        }
    }
}

/// The statements of one commit, in the order that lets a refusal stop early.
fn apply(conn: &Connection, c: &Commit) -> Result<Outcome> {
    const OP: &str = "commit";
    let err = db_error(OP);
    if let Some((key, until)) = &c.claim {
        let claimed = conn
            .prepare_cached(CLAIM)
            .and_then(|mut s| s.execute(params![key.to_bytes(), until]))
            .map_err(err)?;
        if claimed == 0 {
            return Ok(Outcome::Replayed);
        }
    }
    if let Some(exceeded) = quotas::charge(conn, &c.quotas)? {
        return Ok(Outcome::QuotaExceeded(exceeded));
    }
    if let Some(IntentChange::Open {
        task,
        invocation,
        until,
    }) = &c.intent
    {
        let opened = conn
            .prepare_cached(OPEN_INTENT)
            .and_then(|mut s| s.execute(params![task.to_bytes(), invocation.to_bytes(), until]))
            .map_err(db_error(OP))?;
        if opened == 0 {
            let intent = intent_of(conn, *task)?.ok_or_else(|| vanished(OP))?;
            return Ok(Outcome::IntentExists(Box::new(intent)));
        }
    }
    if let Some(r) = &c.receipt {
        let inserted = conn
            .prepare_cached(INSERT_RECEIPT)
            .and_then(|mut s| {
                s.execute(params![
                    r.receipt_cid.to_bytes(),
                    r.ran.to_bytes(),
                    r.task_id.to_bytes(),
                    r.work_id.map(|c| c.to_bytes()),
                    r.ok,
                    r.pure,
                    r.created_at,
                    r.bytes,
                ])
            })
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored = conn
                .prepare_cached(RECEIPT_BY_CID)
                .and_then(|mut s| {
                    s.query_row([r.receipt_cid.to_bytes()], |row| Ok(receipt_from_row(row)))
                        .optional()
                })
                .map_err(db_error(OP))?
                .transpose()?;
            same_or_conflict(stored.as_ref(), r, || {
                format!("receipt {} is stored with other contents", r.receipt_cid)
            })?;
        }
    }
    for (alias, receipt) in &c.aliases {
        let inserted = conn
            .prepare_cached(INSERT_ALIAS)
            .and_then(|mut s| s.execute(params![alias.to_bytes(), receipt.to_bytes()]))
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored = cid_at(conn, ALIAS, *alias)?;
            same_or_conflict(stored.as_ref(), receipt, || {
                format!("alias {alias} already names another receipt")
            })?;
        }
    }
    for (cid, bytes) in &c.blobs {
        let inserted = conn
            .prepare_cached(INSERT_BLOB)
            .and_then(|mut s| s.execute(params![cid.to_bytes(), bytes]))
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored: Option<Vec<u8>> = conn
                .prepare_cached(GET_BLOB)
                .and_then(|mut s| s.query_row([cid.to_bytes()], |row| row.get(0)).optional())
                .map_err(db_error(OP))?;
            same_or_conflict(stored.as_ref(), bytes, || {
                format!("blob {cid} is stored with other bytes")
            })?;
        }
    }
    if let Some((delegation, revocation, at)) = &c.revocation {
        conn.prepare_cached(INSERT_REVOCATION)
            .and_then(|mut s| s.execute(params![delegation.to_bytes(), revocation.to_bytes(), at]))
            .map_err(db_error(OP))?;
    }
    if let Some(IntentChange::Complete { task, receipt }) = &c.intent {
        let updated = conn
            .prepare_cached(COMPLETE_INTENT)
            .and_then(|mut s| s.execute(params![receipt.to_bytes(), task.to_bytes()]))
            .map_err(db_error(OP))?;
        if updated == 0 {
            let Some(intent) = intent_of(conn, *task)? else {
                let message = format!("no intent recorded for {task}");
                return Err(StoreError::new(StoreErrorKind::NotFound, OP, message));
            };
            let completed = IntentState::Completed { receipt: *receipt };
            same_or_conflict(Some(&intent.state), &completed, || {
                format!("intent {task} was completed by another receipt")
            })?;
        }
    }
    for job in &c.add_jobs {
        let inserted = conn
            .prepare_cached(INSERT_JOB)
            .and_then(|mut s| {
                s.execute(params![
                    job.key.to_bytes(),
                    job.backend,
                    job.job_id,
                    job.payload
                ])
            })
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored = conn
                .prepare_cached(PENDING_JOB)
                .and_then(|mut s| {
                    s.query_row([job.key.to_bytes()], |row| Ok(job_from_row(row, 0)))
                        .optional()
                })
                .map_err(db_error(OP))?
                .transpose()?;
            same_or_conflict(stored.as_ref(), job, || {
                format!("another job is already pending under {}", job.key)
            })?;
        }
    }
    for key in &c.remove_jobs {
        conn.prepare_cached(REMOVE_JOB)
            .and_then(|mut s| s.execute([key.to_bytes()]))
            .map_err(db_error(OP))?;
    }
    proofs::keep(conn, &c.proofs, c.proofs_per_issuer)?;
    Ok(Outcome::Committed)
}

/// Settles an insert that changed nothing because `stored` was already under its key: the same value
/// again is a no-op; a different one is a conflict, and the commit is not written.
fn same_or_conflict<T: PartialEq<U> + ?Sized, U: ?Sized>(
    stored: Option<&T>,
    written: &U,
    describe: impl FnOnce() -> String,
) -> Result<()> {
    match stored {
        Some(stored) if stored == written => Ok(()),
        Some(_) => Err(StoreError::new(
            StoreErrorKind::Conflict,
            "commit",
            describe(),
        )),
        None => Err(vanished("commit")),
    }
}

/// Nothing here deletes receipts, aliases, blobs or intents, so only another program writing to
/// the file can make a conflicting row disappear mid-commit.
fn vanished(op: &'static str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Query,
        op,
        "the conflicting row vanished during the call; another program is writing to the database",
    )
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

/// A failure of the database itself rather than of one write.
fn is_fatal(e: &StoreError) -> bool {
    matches!(
        e.kind,
        StoreErrorKind::Unavailable | StoreErrorKind::Corrupt
    )
}

/// The error a write's caller gets when its batch was not committed.
fn nothing_committed(op: &'static str, e: &StoreError) -> StoreError {
    StoreError::new(e.kind, op, format!("nothing committed: {}", e.message))
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
        self.write("commit", applied, move |conn| apply(conn, &commit))
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

/// A receipt row, its columns in [`receipts!`] order.
fn receipt_from_row(row: &Row<'_>) -> Result<StoredReceipt> {
    const OP: &str = "receipt";
    let get_err = db_error(OP);
    let work: Option<Vec<u8>> = row.get(3).map_err(get_err)?;
    Ok(StoredReceipt {
        receipt_cid: cid_column(row, 0)?,
        ran: cid_column(row, 1)?,
        task_id: cid_column(row, 2)?,
        work_id: work.map(|b| decode_cid(OP, &b)).transpose()?,
        ok: row.get(4).map_err(db_error(OP))?,
        pure: row.get(5).map_err(db_error(OP))?,
        created_at: row.get(6).map_err(db_error(OP))?,
        bytes: row.get(7).map_err(db_error(OP))?,
    })
}

/// An intent row: task, invocation, until, receipt.
fn intent_from_row(row: &Row<'_>) -> Result<Intent> {
    const OP: &str = "intent";
    let task = cid_column(row, 0)?;
    let invocation: Option<Vec<u8>> = row.get(1).map_err(db_error(OP))?;
    let receipt: Option<Vec<u8>> = row.get(3).map_err(db_error(OP))?;
    Ok(Intent {
        task,
        // Intents written before invocations were recorded name only their task.
        invocation: invocation
            .map(|b| decode_cid(OP, &b))
            .transpose()?
            .unwrap_or(task),
        until: row.get(2).map_err(db_error(OP))?,
        state: match receipt {
            None => IntentState::Open,
            Some(bytes) => IntentState::Completed {
                receipt: decode_cid(OP, &bytes)?,
            },
        },
    })
}

/// A pending-job row from column `at`: key, backend, job id, payload.
fn job_from_row(row: &Row<'_>, at: usize) -> Result<JobEntry> {
    const OP: &str = "pending";
    Ok(JobEntry {
        key: cid_column(row, at)?,
        backend: row.get(at + 1).map_err(db_error(OP))?,
        job_id: row.get(at + 2).map_err(db_error(OP))?,
        payload: row.get(at + 3).map_err(db_error(OP))?,
    })
}

/// The CID stored in column `index` of `row`.
fn cid_column(row: &Row<'_>, index: usize) -> Result<Cid> {
    let bytes: Vec<u8> = row.get(index).map_err(db_error("read"))?;
    decode_cid("read", &bytes)
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
fn db_error(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::with_source(classify(&e), op, e)
}

/// Sorts a database error into transient trouble (worth a retry), damage, a reference to something
/// not stored, or a rejected statement.
fn classify(e: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::Error as E;
    match e {
        E::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen => StoreErrorKind::Unavailable,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreErrorKind::Corrupt,
            // The only foreign keys point at receipts: an alias or intent completion naming a
            // receipt that is not stored.
            ErrorCode::ConstraintViolation
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                StoreErrorKind::NotFound
            }
            _ => StoreErrorKind::Query,
        },
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Query,
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
