//! The store conformance suite: every test runs against every backend this machine has — SQLite
//! always, PostgreSQL when `UCAN_GATEWAY_TEST_POSTGRES` names a server — so a second backend is held
//! to exactly the same contract. Each test gets a store of its own (a temporary directory, or a
//! schema of its own); nothing outside it is touched. SQLite-only checks (a damaged file, a
//! database from a newer build) are in `sqlite.rs`.

mod blobs;
mod commits;
mod intents;
mod jobs;
mod postgres;
mod proofs;
mod quotas;
mod receipts;
mod replay;
mod revocations;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use cid::Cid;
use tempfile::TempDir;
use ucan_gateway::ipld::{DAG_CBOR, RAW, cid_for};
use ucan_gateway::store::{
    Commit, IntentChange, IntentState, Outcome, PostgresStore, SqliteStore, Store, StoreError,
    StoredReceipt,
};

pub(crate) use crate::support::postgres::{fresh_schema, postgres_url};

/// Where one test's store lives.
pub(crate) enum Backend {
    /// A SQLite file in a temporary directory, removed with it.
    Sqlite { _dir: TempDir, path: PathBuf },
    /// A schema of its own in the PostgreSQL database the tests were given: the URL naming it.
    Postgres { url: String },
}

impl Backend {
    /// The backend's name, for assertion messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// Opens (or reopens) the store: the same data every time.
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite { path, .. } => Arc::new(SqliteStore::open(path).await.unwrap()),
            Backend::Postgres { url } => Arc::new(PostgresStore::open(url).await.unwrap()),
        }
    }
}

/// A fresh store of each kind this machine has: SQLite always, PostgreSQL when
/// `UCAN_GATEWAY_TEST_POSTGRES` names a server (see `support/postgres.rs`).
pub(crate) async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    // A missing subdirectory, so every test also checks that `open` creates it.
    let path = dir.path().join("state").join("gateway.db");
    let mut backends = vec![Backend::Sqlite { _dir: dir, path }];
    if let Some(base) = postgres_url("PostgreSQL store tests") {
        backends.push(Backend::Postgres {
            url: fresh_schema(&base).await,
        });
    }
    backends
}

/// A distinct CID per name.
pub(crate) fn cid(name: &str) -> Cid {
    cid_for(RAW, name.as_bytes())
}

/// A receipt whose bytes (and so whose CID) are unique to `tag`.
pub(crate) fn receipt(
    tag: &str,
    ran: Cid,
    task_id: Cid,
    work_id: Option<Cid>,
    ok: bool,
    pure: bool,
    at: i64,
) -> StoredReceipt {
    let bytes = format!("signed receipt {tag}").into_bytes();
    StoredReceipt {
        receipt_cid: cid_for(DAG_CBOR, &bytes),
        ran,
        task_id,
        work_id,
        ok,
        pure,
        created_at: at,
        bytes,
    }
}

/// Opens the intent to run `task` (as the invocation `task`, until `until`): `true` if it is new.
pub(crate) async fn open_intent(store: &dyn Store, task: Cid, until: i64) -> bool {
    let change = IntentChange::Open {
        task,
        invocation: task,
        until,
    };
    match store
        .commit(Commit::default().with_intent(change))
        .await
        .unwrap()
    {
        Outcome::Committed => true,
        Outcome::IntentExists(_) => false,
        other => panic!("unexpected {other:?}"),
    }
}

/// Completes the intent to run `task` with `receipt`.
pub(crate) async fn complete_intent(
    store: &dyn Store,
    task: Cid,
    receipt: Cid,
) -> Result<(), StoreError> {
    let change = IntentChange::Complete { task, receipt };
    store
        .commit(Commit::default().with_intent(change))
        .await
        .map(drop)
}

/// Where the intent to run `task` stands.
pub(crate) async fn intent_state(store: &dyn Store, task: Cid) -> Option<IntentState> {
    store.intent(task).await.unwrap().map(|i| i.state)
}
