//! The writer thread and its group commit: every write waiting at a moment runs in one transaction,
//! each in a savepoint of its own, and its caller is answered once the transaction is durable; and
//! the checkpointer thread, which copies the WAL into the database file outside any commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::classify;
use crate::store::{Result, StoreError, StoreErrorKind};

/// Work for a reader (or, in memory, the writer): runs on its connection.
pub(super) type Read = Box<dyn FnOnce(&Connection) + Send>;

/// What the writer thread receives.
pub(super) enum Message {
    /// A write (a commit, or purging keys, leasing jobs), run in the next batch.
    Write(Box<dyn Write>),
    /// A read, when the writer's connection is the only one.
    Read(Read),
    /// Finish the queued work, then stop and say so.
    Close(oneshot::Sender<()>),
}

/// A write run inside a batch, whose caller is answered once the batch is durable (or failed).
pub(super) trait Write: Send {
    /// Runs the write in its savepoint: whether it stays, or the database itself failed (the
    /// whole batch is then rolled back).
    fn run(&mut self, conn: &Connection) -> Step;
    /// Answers the caller: with the write's own result, or with why the batch was not committed.
    fn answer(self: Box<Self>, failed: Option<&StoreError>);
}

/// What running a write did to its savepoint.
pub(super) enum Step {
    /// It stays.
    Keep,
    /// It is undone alone (a replay, a conflict).
    Undo,
    /// The database failed; nothing of the batch is committed.
    Fatal(StoreError),
}

/// A write of `T`, kept when it succeeds and `keep` says so.
pub(super) struct Job<T, F> {
    pub(super) op: &'static str,
    pub(super) work: Option<F>,
    pub(super) result: Option<Result<T>>,
    pub(super) done: oneshot::Sender<Result<T>>,
    /// Whether a successful result stays (a commit refused as a replay does not).
    pub(super) keep: fn(&T) -> bool,
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

/// Most commits one transaction carries, which bounds how long the write lock is held.
const BATCH: usize = 512;

/// The checkpointer thread, and what it last saw of the WAL.
pub(super) struct Checkpoints {
    /// Dropped (with the store) to stop the thread.
    _stop: std_mpsc::Sender<()>,
    /// Frames in the WAL at the last checkpoint.
    pub(super) wal_frames: Arc<AtomicU64>,
}

/// Copies committed pages from the WAL into the database file on a thread of its own, once
/// every `every` ([`super::Tuning::checkpoint_every`]), so commits never wait for it (the writer's own automatic checkpoint, which
/// would run inside a commit, is turned off). Passive: it never blocks the writer or readers. Stops
/// when the returned [`Checkpoints`] is dropped; closing the last connection checkpoints what is
/// left.
///
/// Under steady load a passive checkpoint never catches up (the writer adds frames while it
/// copies), and a WAL starts over only once every frame is copied; so the count it reports lets
/// the writer finish the job between two batches (see [`super::Tuning::wal_restart_frames`]),
/// which keeps the WAL, and the index SQLite searches on every page read, bounded.
pub(super) fn checkpointer(conn: Connection, every: Duration) -> Checkpoints {
    let (stop, stopped) = std_mpsc::channel::<()>();
    let wal_frames = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&wal_frames);
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                    Ok(frames) => seen.store(u64::try_from(frames).unwrap_or(0), Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                }
            }
        })
        .expect("spawning the store's checkpoint thread");
    Checkpoints {
        _stop: stop,
        wal_frames,
    }
}

/// The writer thread: takes every message waiting, runs the writes in one transaction, commits,
/// then answers each.
pub(super) fn write_loop(
    conn: Connection,
    queue: std_mpsc::Receiver<Message>,
    wal_frames: Arc<AtomicU64>,
    restart_frames: u64,
    absent: Option<Arc<super::Absent>>,
) {
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
        if let Some(absent) = &absent {
            absent.between_batches();
        }
        if wal_frames.load(Ordering::Relaxed) >= restart_frames {
            // No write runs meanwhile, so this copies every frame the checkpointer has not, and the
            // next batch writes from the start of the WAL. It may find the checkpointer (or a
            // reader's older snapshot) in the way; then it is tried again after the next batch.
            let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
            match done {
                Ok((0, log, copied)) if copied >= log => wal_frames.store(0, Ordering::Relaxed),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
            }
        }
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
