//! One [`Commit`] as one transaction. The statements run in the order that lets a refusal stop
//! early: the replay key first (a replay writes nothing), then the quotas, then the intent, then the
//! rest, proofs last (kept best effort, within their issuer's cap).

use cid::Cid;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, PgExecutor, Row};

use super::{RECEIPT_BY_CID, db_error, intent_from_row, job_from_row, receipt_from_row};
use crate::store::{
    Commit, Intent, IntentChange, IntentState, Outcome, Result, StoreError, StoreErrorKind,
};

const OP: &str = "commit";

const CLAIM: &str = "INSERT INTO seen (key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const OPEN_INTENT: &str = "INSERT INTO intents (task_key, invocation, until_at) \
    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const INSERT_RECEIPT: &str = "INSERT INTO receipts \
    (receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
const INSERT_ALIAS: &str =
    "INSERT INTO receipt_aliases (alias, receipt_cid) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const ALIAS: &str = "SELECT receipt_cid FROM receipt_aliases WHERE alias = $1";
const INSERT_BLOB: &str = "INSERT INTO blobs (cid, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING";
const GET_BLOB: &str = "SELECT bytes FROM blobs WHERE cid = $1";
// Revocations take their positions one transaction at a time, so a process reading "after n" never
// passes over a position still being committed.
const REVOCATION_LOCK: &str = "SELECT pg_advisory_xact_lock(752602170001)";
const INSERT_REVOCATION: &str = "INSERT INTO revocations (delegation, revocation, revoked_at) \
    VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const COMPLETE_INTENT: &str =
    "UPDATE intents SET receipt_cid = $1 WHERE task_key = $2 AND receipt_cid IS NULL";
pub(super) const INTENT: &str =
    "SELECT task_key, invocation, until_at, receipt_cid FROM intents WHERE task_key = $1";
const INSERT_JOB: &str = "INSERT INTO pending_jobs (key, backend, job_id, payload) \
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
pub(super) const PENDING_JOB: &str =
    "SELECT key, backend, job_id, payload FROM pending_jobs WHERE key = $1";
const REMOVE_JOB: &str = "DELETE FROM pending_jobs WHERE key = $1";
// Delivered to every listener when (and only if) the transaction commits. Only revocations are
// announced inside their transaction: a NOTIFY holds a database-wide lock from the statement to the
// end of the commit, so one in every receipt's commit would serialise them (measured: a third of
// the commits per second at 32 callers).
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// How many times a commit the server aborted as a deadlock or serialization failure is tried
/// again; nothing of an aborted attempt was written.
const RETRIES: usize = 3;

/// Why an attempt failed: the driver (maybe worth retrying), or the contract (a conflict).
enum Failure {
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Db(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Writes `commit` in one transaction, announcing a revocation on `channel` in it; a stored receipt
/// is handed to `announcer` once committed (see `notify.rs`).
pub(super) async fn run(
    pool: &PgPool,
    channel: &str,
    announcer: &super::notify::Announcer,
    commit: &Commit,
) -> Result<Outcome> {
    let mut attempt = 0;
    loop {
        match attempt_once(pool, channel, commit).await {
            Ok(Outcome::Committed) => {
                if commit.receipt.is_some() || !commit.aliases.is_empty() {
                    announcer.receipt_stored();
                }
                return Ok(Outcome::Committed);
            }
            Ok(outcome) => return Ok(outcome),
            Err(Failure::Db(e)) if attempt < RETRIES && aborted(&e) => attempt += 1,
            Err(Failure::Db(e)) => return Err(db_error(OP)(e)),
            Err(Failure::Store(e)) => return Err(e),
        }
    }
}

/// Whether the server aborted the transaction to resolve contention (deadlock, serialization).
fn aborted(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}

async fn attempt_once(
    pool: &PgPool,
    channel: &str,
    commit: &Commit,
) -> std::result::Result<Outcome, Failure> {
    let mut tx = pool.begin().await?;
    let outcome = apply(&mut tx, channel, commit).await;
    match outcome {
        Ok(Outcome::Committed) => {
            tx.commit().await?;
            Ok(Outcome::Committed)
        }
        // A refusal writes nothing: everything before it is undone.
        Ok(refused) => {
            let _ = tx.rollback().await;
            Ok(refused)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// The statements of one commit, inside its transaction.
async fn apply(
    conn: &mut PgConnection,
    channel: &str,
    c: &Commit,
) -> std::result::Result<Outcome, Failure> {
    if let Some((key, until)) = &c.claim {
        let claimed = sqlx::query(CLAIM)
            .bind(key.to_bytes())
            .bind(*until)
            .execute(&mut *conn)
            .await?;
        if claimed.rows_affected() == 0 {
            return Ok(Outcome::Replayed);
        }
    }
    // Before anything else is written, so a quota used up costs the rest of the commit nothing.
    if let Some(exceeded) = super::quotas::charge(&mut *conn, &c.quotas).await? {
        return Ok(Outcome::QuotaExceeded(exceeded));
    }
    if let Some(IntentChange::Open {
        task,
        invocation,
        until,
    }) = &c.intent
    {
        let opened = sqlx::query(OPEN_INTENT)
            .bind(task.to_bytes())
            .bind(invocation.to_bytes())
            .bind(*until)
            .execute(&mut *conn)
            .await?;
        if opened.rows_affected() == 0 {
            let intent = intent_of(&mut *conn, OP, *task)
                .await?
                .ok_or_else(|| vanished(OP))?;
            return Ok(Outcome::IntentExists(Box::new(intent)));
        }
    }
    if let Some(r) = &c.receipt {
        let inserted = sqlx::query(INSERT_RECEIPT)
            .bind(r.receipt_cid.to_bytes())
            .bind(r.ran.to_bytes())
            .bind(r.task_id.to_bytes())
            .bind(r.work_id.map(|c| c.to_bytes()))
            .bind(r.ok)
            .bind(r.pure)
            .bind(r.created_at)
            .bind(&r.bytes)
            .execute(&mut *conn)
            .await?;
        if inserted.rows_affected() == 0 {
            let stored = sqlx::query(RECEIPT_BY_CID)
                .bind(r.receipt_cid.to_bytes())
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| receipt_from_row(&row))
                .transpose()?;
            same_or_conflict(stored.as_ref(), r, || {
                format!("receipt {} is stored with other contents", r.receipt_cid)
            })?;
        }
    }
    for (alias, receipt) in &c.aliases {
        let inserted = sqlx::query(INSERT_ALIAS)
            .bind(alias.to_bytes())
            .bind(receipt.to_bytes())
            .execute(&mut *conn)
            .await?;
        if inserted.rows_affected() == 0 {
            let stored = cid_at(&mut *conn, ALIAS, *alias).await?;
            same_or_conflict(stored.as_ref(), receipt, || {
                format!("alias {alias} already names another receipt")
            })?;
        }
    }
    for (cid, bytes) in &c.blobs {
        let inserted = sqlx::query(INSERT_BLOB)
            .bind(cid.to_bytes())
            .bind(bytes)
            .execute(&mut *conn)
            .await?;
        if inserted.rows_affected() == 0 {
            let stored: Option<Vec<u8>> = sqlx::query(GET_BLOB)
                .bind(cid.to_bytes())
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            same_or_conflict(stored.as_ref(), bytes, || {
                format!("blob {cid} is stored with other bytes")
            })?;
        }
    }
    if let Some((delegation, revocation, at)) = &c.revocation {
        sqlx::query(REVOCATION_LOCK).execute(&mut *conn).await?;
        sqlx::query(INSERT_REVOCATION)
            .bind(delegation.to_bytes())
            .bind(revocation.to_bytes())
            .bind(*at)
            .execute(&mut *conn)
            .await?;
        notify(&mut *conn, channel, super::notify::REVOCATION).await?;
    }
    if let Some(IntentChange::Complete { task, receipt }) = &c.intent {
        let updated = sqlx::query(COMPLETE_INTENT)
            .bind(receipt.to_bytes())
            .bind(task.to_bytes())
            .execute(&mut *conn)
            .await?;
        if updated.rows_affected() == 0 {
            let Some(intent) = intent_of(&mut *conn, OP, *task).await? else {
                let message = format!("no intent recorded for {task}");
                return Err(StoreError::new(StoreErrorKind::NotFound, OP, message).into());
            };
            let completed = IntentState::Completed { receipt: *receipt };
            same_or_conflict(Some(&intent.state), &completed, || {
                format!("intent {task} was completed by another receipt")
            })?;
        }
    }
    for job in &c.add_jobs {
        let inserted = sqlx::query(INSERT_JOB)
            .bind(job.key.to_bytes())
            .bind(&job.backend)
            .bind(&job.job_id)
            .bind(&job.payload)
            .execute(&mut *conn)
            .await?;
        if inserted.rows_affected() == 0 {
            let stored = sqlx::query(PENDING_JOB)
                .bind(job.key.to_bytes())
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| job_from_row(OP, &row, 0))
                .transpose()?;
            same_or_conflict(stored.as_ref(), job, || {
                format!("another job is already pending under {}", job.key)
            })?;
        }
    }
    for key in &c.remove_jobs {
        sqlx::query(REMOVE_JOB)
            .bind(key.to_bytes())
            .execute(&mut *conn)
            .await?;
    }
    super::proofs::keep(&mut *conn, &c.proofs, c.proofs_per_issuer).await?;
    Ok(Outcome::Committed)
}

/// Announces `what` on `channel` when the transaction commits.
async fn notify(conn: &mut PgConnection, channel: &str, what: &str) -> Result<(), sqlx::Error> {
    sqlx::query(NOTIFY)
        .bind(channel)
        .bind(what)
        .execute(conn)
        .await
        .map(drop)
}

/// The intent for `task`.
pub(super) async fn intent_of<'e>(
    ex: impl PgExecutor<'e>,
    op: &'static str,
    task: Cid,
) -> Result<Option<Intent>> {
    let row = sqlx::query(INTENT)
        .bind(task.to_bytes())
        .fetch_optional(ex)
        .await
        .map_err(db_error(op))?;
    row.map(|r| intent_from_row(op, &r)).transpose()
}

/// The CID in the first column of the row `sql` finds with `cid` bound.
async fn cid_at(conn: &mut PgConnection, sql: &'static str, cid: Cid) -> Result<Option<Cid>> {
    let row = sqlx::query(sql)
        .bind(cid.to_bytes())
        .fetch_optional(conn)
        .await
        .map_err(db_error(OP))?;
    row.map(|r| super::cid_column(OP, &r, 0)).transpose()
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
        Some(_) => Err(StoreError::new(StoreErrorKind::Conflict, OP, describe())),
        None => Err(vanished(OP)),
    }
}

/// Nothing here deletes receipts, aliases, blobs or intents, so only another program writing to the
/// database can make a conflicting row disappear mid-commit.
fn vanished(op: &'static str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Query,
        op,
        "the conflicting row vanished during the call; another program is writing to the database",
    )
}
