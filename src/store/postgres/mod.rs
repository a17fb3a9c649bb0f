//! The PostgreSQL backend: several gateway processes (replicas) sharing one database.
//!
//! **One transaction per commit.** Each [`Commit`] runs in a transaction of its own on a pooled
//! connection; the server's unique constraints decide races between processes. Of any number of
//! transactions inserting one replay key (or one intent), one inserts it; the others wait for it to
//! commit, then find the row (`ON CONFLICT DO NOTHING` affects nothing), roll back everything else they
//! did and answer [`Outcome::Replayed`] (or [`Outcome::IntentExists`]). Any failure rolls the whole
//! transaction back, so nothing is ever half-written. The server makes a commit durable before it
//! acknowledges it (with its default `synchronous_commit = on`).
//!
//! **Announcements.** A commit that records a revocation announces it with `NOTIFY`, delivered to
//! every process listening once the transaction commits; commits that store receipts are announced
//! together just after they commit (`notify.rs`). [`Store::changes`] hands those
//! announcements on, so a replica honours a revocation another accepted, and wakes a request waiting
//! for a receipt another stored, without polling for them.
//!
//! **A database that goes away.** Every call waits at most the connect timeout for a connection and
//! every statement at most the statement timeout; past either, or when a connection breaks, the call
//! fails as [`StoreErrorKind::Unavailable`] with its transaction rolled back. The pool checks each
//! connection before handing it out and opens new ones as needed, so once the server answers again the
//! store works again, without a restart.

mod commit;
mod notify;
mod options;
mod proofs;
mod quotas;

use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor as _, Row};
use tokio::sync::watch;

pub use options::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT, PostgresOptions,
};

use super::{
    BlobStore, Changes, Commit, Intent, IntentState, IntentStore, JobEntry, JobStore, Outcome,
    ReceiptStore, ReplayStore, Result, RevocationStore, Store, StoreError, StoreErrorKind,
    StoredReceipt,
};

/// The schema, applied in order; `_sqlx_migrations` records what is applied.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

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
        concat!(
            receipts!($filter),
            " ORDER BY created_at DESC, seq DESC LIMIT 1"
        )
    };
}
const RECEIPT_BY_CID: &str = receipts!("WHERE receipt_cid = $1");
const RECEIPT_BY_RAN: &str = receipts!("WHERE ran = $1", latest);
const RECEIPT_BY_TASK: &str = receipts!("WHERE task_id = $1", latest);
// The conditions repeat the partial index's `WHERE` so the planner can use it.
const MEMOIZED: &str = receipts!("WHERE work_id = $1 AND ok AND pure", latest);
// Four index lookups, each the latest of its kind, the strongest kind winning.
const RECEIPT_BY_ANY: &str = "SELECT * FROM ( \
    (SELECT receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes, 0 AS rank \
     FROM receipts WHERE ran = $1 ORDER BY created_at DESC, seq DESC LIMIT 1) \
    UNION ALL \
    (SELECT receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes, 1 \
     FROM receipts WHERE task_id = $1 ORDER BY created_at DESC, seq DESC LIMIT 1) \
    UNION ALL \
    (SELECT receipt_cid, ran, task_id, work_id, ok, pure, created_at, bytes, 2 \
     FROM receipts WHERE receipt_cid = $1) \
    UNION ALL \
    (SELECT r.receipt_cid, r.ran, r.task_id, r.work_id, r.ok, r.pure, r.created_at, r.bytes, 3 \
     FROM receipt_aliases a JOIN receipts r ON r.receipt_cid = a.receipt_cid WHERE a.alias = $1) \
    ) AS found ORDER BY rank LIMIT 1";
const SEEN: &str = "SELECT 1 FROM seen WHERE key = $1";
const PURGE_SEEN: &str = "DELETE FROM seen WHERE expires_at < $1";
const ALIAS: &str = "SELECT receipt_cid FROM receipt_aliases WHERE alias = $1";
const GET_BLOB: &str = "SELECT bytes FROM blobs WHERE cid = $1";
const HAS_BLOB: &str = "SELECT 1 FROM blobs WHERE cid = $1";
const IS_REVOKED: &str = "SELECT 1 FROM revocations WHERE delegation = $1";
const REVOCATIONS_SINCE: &str =
    "SELECT seq, delegation FROM revocations WHERE seq > $1 ORDER BY seq";
const INTERRUPTED: &str = "SELECT task_key, invocation, until_at, receipt_cid FROM intents \
    WHERE receipt_cid IS NULL AND until_at < $1 ORDER BY until_at";
const PENDING: &str = "SELECT key, backend, job_id, payload FROM pending_jobs ORDER BY seq";
// Rows another process is leasing right now are skipped, not waited for: each job goes to one.
const LEASE_JOBS: &str = "UPDATE pending_jobs SET holder = $1, lease_until = $3 WHERE seq IN \
    (SELECT seq FROM pending_jobs WHERE holder IS NULL OR holder = $1 OR lease_until < $2 \
     ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
    RETURNING seq, key, backend, job_id, payload";

/// A [`Store`] in a PostgreSQL database, shared by any number of gateway processes.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    options: PostgresOptions,
    /// The channel commits announce on: one per schema, so stores in other schemas stay quiet.
    channel: String,
    changes: watch::Receiver<Changes>,
    announcer: notify::Announcer,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://…` or `postgresql://…`, with the
    /// [`PostgresOptions`] parameters), creates the schema if one is named and missing, and brings
    /// the tables up to date. Several processes may do this at once.
    pub async fn open(url: &str) -> Result<Self> {
        let (options, connect) = PostgresOptions::from_url(url)?;
        let connect = options.apply(connect);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size)
            .min_connections(0)
            .acquire_timeout(options.connect_timeout)
            .test_before_acquire(true)
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?;
        if let Some(schema) = &options.schema {
            create_schema(&pool, schema).await?;
        }
        MIGRATOR.run(&pool).await.map_err(|e| {
            let kind = match e {
                sqlx::migrate::MigrateError::Execute(_) => StoreErrorKind::Open,
                _ => StoreErrorKind::Migrate,
            };
            StoreError::with_source(kind, "open", e)
        })?;
        let channel = format!(
            "ucan_gateway_{}",
            options.schema.as_deref().unwrap_or("public")
        );
        let changes = notify::listen(&pool, channel.clone()).await?;
        let announcer = notify::Announcer::start(pool.clone(), channel.clone());
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                options,
                channel,
                changes,
                announcer,
            }),
        })
    }

    /// The options it was opened with.
    pub fn options(&self) -> &PostgresOptions {
        &self.inner.options
    }

    /// The receipt `sql` finds with `cid` bound.
    async fn receipt(
        &self,
        op: &'static str,
        sql: &'static str,
        cid: Cid,
    ) -> Result<Option<StoredReceipt>> {
        let row = sqlx::query(sql)
            .bind(cid.to_bytes())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error(op))?;
        row.map(|r| receipt_from_row(&r))
            .transpose()
            .map_err(|e| e.in_op(op))
    }

    /// Whether `sql` finds a row with `cid` bound.
    async fn exists(&self, op: &'static str, sql: &'static str, cid: Cid) -> Result<bool> {
        let row = sqlx::query(sql)
            .bind(cid.to_bytes())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error(op))?;
        Ok(row.is_some())
    }
}

/// Creates `schema` unless it exists. Two processes starting at once may both try; the loser's
/// error says it exists, which is what it wanted.
async fn create_schema(pool: &PgPool, schema: &str) -> Result<()> {
    // `schema` is checked to be letters, digits and `_` (see `PostgresOptions::from_url`).
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match pool.execute(sqlx::AssertSqlSafe(sql)).await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {
            Ok(())
        }
        Err(e) => Err(StoreError::with_source(StoreErrorKind::Open, "open", e)),
    }
}

#[async_trait]
impl ReceiptStore for PostgresStore {
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
        const OP: &str = "alias";
        let row = sqlx::query(ALIAS)
            .bind(alias.to_bytes())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        row.map(|r| cid_column(OP, &r, 0)).transpose()
    }
}

#[async_trait]
impl ReplayStore for PostgresStore {
    async fn seen(&self, key: Cid) -> Result<bool> {
        self.exists("seen", SEEN, key).await
    }

    async fn purge_seen(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(PURGE_SEEN)
            .bind(now)
            .execute(&self.inner.pool)
            .await
            .map_err(db_error("purge_seen"))?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl RevocationStore for PostgresStore {
    async fn is_revoked(&self, delegation: Cid) -> Result<bool> {
        self.exists("is_revoked", IS_REVOKED, delegation).await
    }

    async fn revocations_since(&self, after: u64) -> Result<Vec<(u64, Cid)>> {
        const OP: &str = "revocations_since";
        let rows = sqlx::query(REVOCATIONS_SINCE)
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(db_error(OP))?;
                Ok((u64::try_from(seq).unwrap_or(0), cid_column(OP, row, 1)?))
            })
            .collect()
    }
}

#[async_trait]
impl BlobStore for PostgresStore {
    async fn get_blob(&self, cid: Cid) -> Result<Option<Vec<u8>>> {
        const OP: &str = "get_blob";
        let row = sqlx::query(GET_BLOB)
            .bind(cid.to_bytes())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        row.map(|r| r.try_get(0).map_err(db_error(OP))).transpose()
    }

    async fn has_blob(&self, cid: Cid) -> Result<bool> {
        self.exists("has_blob", HAS_BLOB, cid).await
    }
}

#[async_trait]
impl IntentStore for PostgresStore {
    async fn intent(&self, task: Cid) -> Result<Option<Intent>> {
        commit::intent_of(&self.inner.pool, "intent", task).await
    }

    async fn interrupted(&self, now: i64) -> Result<Vec<Intent>> {
        const OP: &str = "interrupted";
        let rows = sqlx::query(INTERRUPTED)
            .bind(now)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        rows.iter().map(|row| intent_from_row(OP, row)).collect()
    }
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn pending(&self) -> Result<Vec<JobEntry>> {
        const OP: &str = "pending";
        let rows = sqlx::query(PENDING)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        rows.iter().map(|row| job_from_row(OP, row, 0)).collect()
    }

    async fn lease_jobs(
        &self,
        holder: &str,
        now: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<JobEntry>> {
        const OP: &str = "lease_jobs";
        let rows = sqlx::query(LEASE_JOBS)
            .bind(holder)
            .bind(now)
            .bind(until)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        let mut leased = rows
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(db_error(OP))?;
                Ok((seq, job_from_row(OP, row, 1)?))
            })
            .collect::<Result<Vec<_>>>()?;
        leased.sort_by_key(|(seq, _)| *seq);
        Ok(leased.into_iter().map(|(_, job)| job).collect())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn commit(&self, commit: Commit) -> Result<Outcome> {
        commit::run(
            &self.inner.pool,
            &self.inner.channel,
            &self.inner.announcer,
            &commit,
        )
        .await
    }

    async fn health(&self) -> Result<()> {
        self.inner
            .pool
            .execute("SELECT 1")
            .await
            .map(drop)
            .map_err(db_error("health"))
    }

    async fn close(&self) {
        self.inner.pool.close().await;
    }

    fn changes(&self) -> Option<watch::Receiver<Changes>> {
        Some(self.inner.changes.clone())
    }
}

/// A receipt row, its columns in [`receipts!`] order.
fn receipt_from_row(row: &PgRow) -> Result<StoredReceipt> {
    const OP: &str = "receipt";
    let work: Option<Vec<u8>> = row.try_get(3).map_err(db_error(OP))?;
    Ok(StoredReceipt {
        receipt_cid: cid_column(OP, row, 0)?,
        ran: cid_column(OP, row, 1)?,
        task_id: cid_column(OP, row, 2)?,
        work_id: work.map(|b| decode_cid(OP, &b)).transpose()?,
        ok: row.try_get(4).map_err(db_error(OP))?,
        pure: row.try_get(5).map_err(db_error(OP))?,
        created_at: row.try_get(6).map_err(db_error(OP))?,
        bytes: row.try_get(7).map_err(db_error(OP))?,
    })
}

/// An intent row: task, invocation, until, receipt.
fn intent_from_row(op: &'static str, row: &PgRow) -> Result<Intent> {
    let receipt: Option<Vec<u8>> = row.try_get(3).map_err(db_error(op))?;
    Ok(Intent {
        task: cid_column(op, row, 0)?,
        invocation: cid_column(op, row, 1)?,
        until: row.try_get(2).map_err(db_error(op))?,
        state: match receipt {
            None => IntentState::Open,
            Some(bytes) => IntentState::Completed {
                receipt: decode_cid(op, &bytes)?,
            },
        },
    })
}

/// A pending-job row from column `at`: key, backend, job id, payload.
fn job_from_row(op: &'static str, row: &PgRow, at: usize) -> Result<JobEntry> {
    Ok(JobEntry {
        key: cid_column(op, row, at)?,
        backend: row.try_get(at + 1).map_err(db_error(op))?,
        job_id: row.try_get(at + 2).map_err(db_error(op))?,
        payload: row.try_get(at + 3).map_err(db_error(op))?,
    })
}

/// The CID stored in column `index` of `row`.
fn cid_column(op: &'static str, row: &PgRow, index: usize) -> Result<Cid> {
    let bytes: Vec<u8> = row.try_get(index).map_err(db_error(op))?;
    decode_cid(op, &bytes)
}

/// A CID from its stored binary form; anything else in a CID column was written by something other
/// than this store.
fn decode_cid(op: &'static str, bytes: &[u8]) -> Result<Cid> {
    let cid = Cid::try_from(bytes)
        .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupt, op, e))?;
    if cid.encoded_len() != bytes.len() {
        let message = "trailing bytes after a stored CID";
        return Err(StoreError::new(StoreErrorKind::Corrupt, op, message));
    }
    Ok(cid)
}

/// Maps a database error of operation `op`.
fn db_error(op: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::with_source(classify(&e), op, e)
}

/// Sorts a driver error into transient trouble (worth a retry), damage, a reference to something
/// not stored, or a rejected statement.
fn classify(e: &sqlx::Error) -> StoreErrorKind {
    use sqlx::Error as E;
    match e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => StoreErrorKind::Unavailable,
        E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) => StoreErrorKind::Corrupt,
        E::Database(db) => match db.code().as_deref() {
            // The only foreign keys point at receipts: an alias or intent completion naming a
            // receipt that is not stored.
            Some("23503") => StoreErrorKind::NotFound,
            Some(code) if transient(code) => StoreErrorKind::Unavailable,
            _ => StoreErrorKind::Query,
        },
        _ => StoreErrorKind::Query,
    }
}

/// SQLSTATE classes and codes after which the same call may succeed later: connection trouble
/// (08), too few resources (53), the server going down or cancelling a statement that ran past the
/// timeout (57), a serialization failure or deadlock (40), a system error (58).
fn transient(code: &str) -> bool {
    matches!(&code[..code.len().min(2)], "08" | "40" | "53" | "57" | "58")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value bound to a lookup's parameters when explaining it.
    enum Param {
        Bytes,
        Int,
        Text,
    }

    /// Every lookup can search an index, so none slows down as receipts and keys accumulate:
    /// with sequential scans switched off, no plan still needs one. Runs when
    /// `UCAN_GATEWAY_TEST_POSTGRES` names a server.
    #[tokio::test]
    async fn lookups_use_indexes() {
        let Ok(base) = std::env::var("UCAN_GATEWAY_TEST_POSTGRES") else {
            assert_ne!(
                std::env::var("UCAN_GATEWAY_REQUIRE_POSTGRES").as_deref(),
                Ok("1"),
                "set UCAN_GATEWAY_TEST_POSTGRES"
            );
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"SKIPPED: PostgreSQL query plans (set UCAN_GATEWAY_TEST_POSTGRES)\n",
            );
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!(
            "{base}{separator}schema=ucan_t_{now}_{}_plans",
            std::process::id()
        );
        let store = PostgresStore::open(&url).await.unwrap();
        let mut conn = store.inner.pool.acquire().await.unwrap();
        conn.execute("SET enable_seqscan = off").await.unwrap();
        let lookups = [
            (RECEIPT_BY_CID, Param::Bytes),
            (RECEIPT_BY_RAN, Param::Bytes),
            (RECEIPT_BY_TASK, Param::Bytes),
            (MEMOIZED, Param::Bytes),
            (RECEIPT_BY_ANY, Param::Bytes),
            (ALIAS, Param::Bytes),
            (GET_BLOB, Param::Bytes),
            (HAS_BLOB, Param::Bytes),
            (SEEN, Param::Bytes),
            (PURGE_SEEN, Param::Int),
            (IS_REVOKED, Param::Bytes),
            (REVOCATIONS_SINCE, Param::Int),
            (INTERRUPTED, Param::Int),
            (commit::INTENT, Param::Bytes),
            (commit::PENDING_JOB, Param::Bytes),
            (proofs::PROOFS_OF, Param::Text),
            (quotas::PURGE_QUOTAS, Param::Int),
        ];
        for (sql, param) in lookups {
            let explain =
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")));
            let explain = match param {
                Param::Bytes => explain.bind(b"x".to_vec()),
                Param::Int => explain.bind(1_i64),
                Param::Text => explain.bind("did:key:x"),
            };
            let plan = explain.fetch_all(&mut *conn).await.unwrap().join("\n");
            assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
            assert!(plan.contains("Index"), "{sql}\n{plan}");
        }
        // Lookups of two parameters, the second a time.
        let paired = [
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
                "EXPLAIN {}",
                proofs::PROOFS
            )))
            .bind(vec![b"x".to_vec()])
            .bind(1_i64),
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "EXPLAIN {}",
                proofs::DELEGATED_TO
            )))
            .bind("did:key:x")
            .bind(1_i64),
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {}", quotas::USED)))
                .bind(b"x".to_vec())
                .bind(1_i64),
        ];
        for explain in paired {
            let plan = explain.fetch_all(&mut *conn).await.unwrap().join("\n");
            assert!(!plan.contains("Seq Scan"), "{plan}");
            assert!(plan.contains("Index"), "{plan}");
        }
        drop(conn);
        let schema = url.rsplit("schema=").next().unwrap().to_owned();
        let _ = store
            .inner
            .pool
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA \"{schema}\" CASCADE"
            )))
            .await;
    }

    #[test]
    fn driver_errors_are_sorted_by_what_a_caller_can_do() {
        assert_eq!(
            classify(&sqlx::Error::PoolTimedOut),
            StoreErrorKind::Unavailable
        );
        assert_eq!(
            classify(&sqlx::Error::PoolClosed),
            StoreErrorKind::Unavailable
        );
        assert_eq!(
            classify(&sqlx::Error::Io(std::io::ErrorKind::BrokenPipe.into())),
            StoreErrorKind::Unavailable
        );
        for code in ["57014", "57P01", "08006", "40P01", "53300"] {
            assert!(transient(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!transient(code), "{code}");
        }
    }
}
