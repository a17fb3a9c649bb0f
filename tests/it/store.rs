//! The SQLite store through the `Store` trait: every operation, its idempotence and conflicts, the
//! replay and intent guarantees under concurrency, and what survives closing and reopening the file.
//! Each test gets its own temporary directory; nothing outside it is touched.

use std::path::PathBuf;
use std::sync::Arc;

use cid::Cid;
use sqlx::ConnectOptions;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;
use ucan_gateway::ipld::{DAG_CBOR, RAW, cid_for};
use ucan_gateway::store::{
    IntentState, JobEntry, SqliteStore, Store, StoreErrorKind, StoredReceipt,
};

/// A database file in a fresh temporary directory, removed with it.
struct Db {
    _dir: TempDir,
    path: PathBuf,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A missing subdirectory, so every test also checks that `open` creates it.
        let path = dir.path().join("state").join("gateway.db");
        Db { _dir: dir, path }
    }

    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.path).await.unwrap())
    }

    /// A raw connection, to damage the file the way only another program could.
    async fn raw(&self) -> SqliteConnection {
        SqliteConnectOptions::new()
            .filename(&self.path)
            .connect()
            .await
            .unwrap()
    }
}

/// A distinct CID per name.
fn cid(name: &str) -> Cid {
    cid_for(RAW, name.as_bytes())
}

/// A receipt whose bytes (and so whose CID) are unique to `tag`.
fn receipt(
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

#[tokio::test]
async fn a_receipt_is_found_by_each_of_its_keys() {
    let db = Db::new();
    let store = db.open().await;
    let r = receipt(
        "a",
        cid("inv"),
        cid("task"),
        Some(cid("work")),
        true,
        true,
        100,
    );
    assert!(store.put_receipt(&r).await.unwrap());

    assert_eq!(
        store.receipt_by_invocation(cid("inv")).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(
        store.receipt_by_task(cid("task")).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(
        store.receipt_by_cid(r.receipt_cid).await.unwrap(),
        Some(r.clone())
    );
    for key in [cid("inv"), cid("task"), r.receipt_cid] {
        assert_eq!(store.receipt_by_any(key).await.unwrap(), Some(r.clone()));
    }
    // Keys of one kind do not match as another.
    assert_eq!(
        store.receipt_by_invocation(cid("task")).await.unwrap(),
        None
    );
    assert_eq!(store.receipt_by_task(cid("inv")).await.unwrap(), None);
    assert_eq!(store.receipt_by_cid(cid("inv")).await.unwrap(), None);
    assert_eq!(store.receipt_by_any(cid("work")).await.unwrap(), None);
    assert_eq!(store.receipt_by_any(cid("nothing")).await.unwrap(), None);

    // A receipt without a work id round-trips its `None`.
    let plain = receipt("b", cid("inv2"), cid("task2"), None, false, false, 101);
    store.put_receipt(&plain).await.unwrap();
    assert_eq!(
        store.receipt_by_cid(plain.receipt_cid).await.unwrap(),
        Some(plain)
    );
}

#[tokio::test]
async fn lookups_by_task_and_invocation_return_the_latest_receipt() {
    let store = SqliteStore::memory().await.unwrap();
    let task = cid("task");
    let old = receipt("old", cid("inv1"), task, None, false, false, 100);
    let new = receipt("new", cid("inv2"), task, None, true, false, 200);
    // Stored newest first, so insertion order alone cannot explain the answer.
    store.put_receipt(&new).await.unwrap();
    store.put_receipt(&old).await.unwrap();
    assert_eq!(
        store.receipt_by_task(task).await.unwrap(),
        Some(new.clone())
    );

    // Within one second, the later insert wins.
    let same_second = receipt("tie", cid("inv3"), task, None, true, false, 200);
    store.put_receipt(&same_second).await.unwrap();
    assert_eq!(
        store.receipt_by_task(task).await.unwrap(),
        Some(same_second)
    );

    let retry = receipt("retry", cid("inv1"), task, None, true, false, 150);
    store.put_receipt(&retry).await.unwrap();
    assert_eq!(
        store.receipt_by_invocation(cid("inv1")).await.unwrap(),
        Some(retry)
    );
}

#[tokio::test]
async fn put_receipt_is_idempotent_and_never_replaces_a_stored_receipt() {
    let store = SqliteStore::memory().await.unwrap();
    let r = receipt("a", cid("inv"), cid("task"), None, true, false, 100);
    assert!(store.put_receipt(&r).await.unwrap());
    assert!(!store.put_receipt(&r).await.unwrap());

    let mut forged = r.clone();
    forged.ok = false;
    forged.bytes = b"other bytes".to_vec();
    let err = store.put_receipt(&forged).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    assert_eq!(err.op, "put_receipt");
    assert_eq!(store.receipt_by_cid(r.receipt_cid).await.unwrap(), Some(r));
}

#[tokio::test]
async fn memoized_returns_only_ok_receipts_of_pure_tasks_with_that_work_id() {
    let store = SqliteStore::memory().await.unwrap();
    let work = cid("work");
    assert_eq!(store.memoized(work).await.unwrap(), None);

    let failed = receipt("failed", cid("i1"), cid("t1"), Some(work), false, true, 100);
    let impure = receipt("impure", cid("i2"), cid("t2"), Some(work), true, false, 101);
    let elsewhere = receipt(
        "other",
        cid("i3"),
        cid("t3"),
        Some(cid("other work")),
        true,
        true,
        102,
    );
    for r in [&failed, &impure, &elsewhere] {
        store.put_receipt(r).await.unwrap();
    }
    assert_eq!(store.memoized(work).await.unwrap(), None);

    let good = receipt("good", cid("i4"), cid("t4"), Some(work), true, true, 103);
    store.put_receipt(&good).await.unwrap();
    assert_eq!(store.memoized(work).await.unwrap(), Some(good.clone()));

    // A later failure does not hide the earlier success; a later success replaces it.
    store
        .put_receipt(&receipt(
            "late failure",
            cid("i5"),
            cid("t5"),
            Some(work),
            false,
            true,
            104,
        ))
        .await
        .unwrap();
    assert_eq!(store.memoized(work).await.unwrap(), Some(good));
    let better = receipt("better", cid("i6"), cid("t6"), Some(work), true, true, 105);
    store.put_receipt(&better).await.unwrap();
    assert_eq!(store.memoized(work).await.unwrap(), Some(better));
    assert_eq!(
        store.memoized(cid("other work")).await.unwrap(),
        Some(elsewhere)
    );
}

#[tokio::test]
async fn aliases_find_receipts_and_never_move() {
    let store = SqliteStore::memory().await.unwrap();
    let r = receipt("a", cid("inv"), cid("task"), None, true, false, 100);
    let other = receipt("b", cid("inv b"), cid("task b"), None, true, false, 100);
    store.put_receipt(&r).await.unwrap();
    store.put_receipt(&other).await.unwrap();

    let effect = cid("effect task");
    assert!(store.put_alias(effect, r.receipt_cid).await.unwrap());
    assert!(!store.put_alias(effect, r.receipt_cid).await.unwrap());
    assert_eq!(store.receipt_by_any(effect).await.unwrap(), Some(r.clone()));

    let err = store
        .put_alias(effect, other.receipt_cid)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    assert_eq!(store.receipt_by_any(effect).await.unwrap(), Some(r.clone()));

    let err = store
        .put_alias(cid("dangling"), cid("no such receipt"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound);
    assert_eq!(store.receipt_by_any(cid("dangling")).await.unwrap(), None);
}

#[tokio::test]
async fn receipt_by_any_prefers_invocation_then_task_then_receipt_then_alias() {
    let store = SqliteStore::memory().await.unwrap();
    let x = cid("x");
    // Four receipts, each matching `x` in a different way; the oldest matches the strongest way.
    let by_alias = receipt("alias", cid("i1"), cid("t1"), None, true, false, 400);
    let by_task = receipt("task", cid("i3"), x, None, true, false, 200);
    let by_ran = receipt("ran", x, cid("t4"), None, true, false, 100);
    store.put_receipt(&by_alias).await.unwrap();
    store.put_alias(x, by_alias.receipt_cid).await.unwrap();
    assert_eq!(
        store.receipt_by_any(x).await.unwrap(),
        Some(by_alias.clone())
    );

    // A CID that is one receipt's own CID and an alias of another finds the receipt itself.
    let by_receipt = receipt("receipt", cid("i2"), cid("t2"), None, true, false, 300);
    store.put_receipt(&by_receipt).await.unwrap();
    store
        .put_alias(by_receipt.receipt_cid, by_alias.receipt_cid)
        .await
        .unwrap();
    assert_eq!(
        store.receipt_by_any(by_receipt.receipt_cid).await.unwrap(),
        Some(by_receipt)
    );

    store.put_receipt(&by_task).await.unwrap();
    assert_eq!(store.receipt_by_any(x).await.unwrap(), Some(by_task));
    store.put_receipt(&by_ran).await.unwrap();
    assert_eq!(store.receipt_by_any(x).await.unwrap(), Some(by_ran));
}

#[tokio::test]
async fn blobs_are_idempotent_and_never_overwritten() {
    let db = Db::new();
    let store = db.open().await;
    let module = b"\0asm\x01\0\0\0".to_vec();
    let id = cid_for(RAW, &module);
    assert!(!store.has_blob(id).await.unwrap());
    assert_eq!(store.get_blob(id).await.unwrap(), None);

    assert!(store.put_blob(id, &module).await.unwrap());
    assert!(!store.put_blob(id, &module).await.unwrap());
    assert!(store.has_blob(id).await.unwrap());
    assert_eq!(store.get_blob(id).await.unwrap(), Some(module.clone()));

    let err = store.put_blob(id, b"something else").await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    assert_eq!(store.get_blob(id).await.unwrap(), Some(module.clone()));

    let empty = cid_for(RAW, b"");
    assert!(store.put_blob(empty, b"").await.unwrap());
    assert_eq!(store.get_blob(empty).await.unwrap(), Some(Vec::new()));

    store.close().await;
    let store = db.open().await;
    assert_eq!(store.get_blob(id).await.unwrap(), Some(module));
}

#[tokio::test]
async fn mark_seen_reports_a_replay_even_after_a_restart() {
    let db = Db::new();
    let store = db.open().await;
    let key = cid("invocation");
    assert!(store.mark_seen(key, Some(2_000)).await.unwrap());
    assert!(!store.mark_seen(key, Some(2_000)).await.unwrap());
    assert!(store.mark_seen(cid("another"), None).await.unwrap());
    store.close().await;

    let store = db.open().await;
    assert!(!store.mark_seen(key, Some(2_000)).await.unwrap());
    assert!(!store.mark_seen(cid("another"), None).await.unwrap());
    assert!(store.mark_seen(cid("fresh"), None).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_fifty_concurrent_mark_seen_calls_wins() {
    let db = Db::new();
    let store = db.open().await;
    let key = cid("raced");
    let calls = (0..50).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.mark_seen(key, None).await.unwrap() })
    });
    let mut wins = 0;
    for call in calls.collect::<Vec<_>>() {
        wins += usize::from(call.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_never_both_win_a_key() {
    // Two gateways sharing a file contend for SQLite's lock rather than one in-memory queue.
    let db = Db::new();
    let first = db.open().await;
    let second = db.open().await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let key = cid(&format!("key {i}"));
        for store in [&first, &second, &first, &second] {
            let store = Arc::clone(store);
            calls.push(tokio::spawn(async move {
                (i, store.mark_seen(key, None).await.unwrap())
            }));
        }
    }
    let mut wins = [0; 20];
    for call in calls {
        let (i, new) = call.await.unwrap();
        wins[i] += usize::from(new);
    }
    assert_eq!(wins, [1; 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_does_not_spoil_the_writes_committed_with_it() {
    // Writes issued together share a commit; one naming a missing receipt must fail alone.
    let db = Db::new();
    let store = db.open().await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        calls.push(tokio::spawn(async move {
            let key = cid(&format!("call {i}"));
            if i % 2 == 0 {
                store.mark_seen(key, None).await.map(|_| ())
            } else {
                store
                    .put_alias(key, cid("no such receipt"))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.unwrap() {
            Ok(()) => assert_eq!(i % 2, 0),
            Err(e) => assert_eq!((i % 2, e.kind), (1, StoreErrorKind::NotFound), "{e}"),
        }
    }
    store.close().await;
    let store = db.open().await;
    for i in (0..40).step_by(2) {
        assert!(
            !store
                .mark_seen(cid(&format!("call {i}")), None)
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn purge_seen_removes_only_expired_keys() {
    let store = SqliteStore::memory().await.unwrap();
    store.mark_seen(cid("expired"), Some(99)).await.unwrap();
    store
        .mark_seen(cid("expiring now"), Some(100))
        .await
        .unwrap();
    store.mark_seen(cid("later"), Some(101)).await.unwrap();
    store.mark_seen(cid("forever"), None).await.unwrap();

    assert_eq!(store.purge_seen(100).await.unwrap(), 1);
    assert_eq!(store.purge_seen(100).await.unwrap(), 0);
    assert!(
        store.mark_seen(cid("expired"), Some(99)).await.unwrap(),
        "a purged key is new again"
    );
    for kept in ["expiring now", "later", "forever"] {
        assert!(
            !store.mark_seen(cid(kept), None).await.unwrap(),
            "{kept} was purged"
        );
    }
    assert_eq!(store.purge_seen(i64::MAX).await.unwrap(), 3);
    assert!(!store.mark_seen(cid("forever"), None).await.unwrap());
}

#[tokio::test]
async fn revocations_are_recorded_once_and_survive_a_restart() {
    let db = Db::new();
    let store = db.open().await;
    assert!(!store.is_revoked(cid("d1")).await.unwrap());
    assert_eq!(store.revoked().await.unwrap(), Vec::<Cid>::new());

    assert!(store.revoke(cid("d1"), cid("rev1"), 100).await.unwrap());
    assert!(!store.revoke(cid("d1"), cid("rev2"), 200).await.unwrap());
    assert!(store.revoke(cid("d2"), cid("rev3"), 300).await.unwrap());
    assert!(store.is_revoked(cid("d1")).await.unwrap());
    assert!(!store.is_revoked(cid("rev1")).await.unwrap());
    store.close().await;

    let store = db.open().await;
    assert!(store.is_revoked(cid("d1")).await.unwrap());
    assert!(store.is_revoked(cid("d2")).await.unwrap());
    let mut all = store.revoked().await.unwrap();
    all.sort();
    let mut expected = vec![cid("d1"), cid("d2")];
    expected.sort();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn intents_are_recorded_once_and_completed_by_a_stored_receipt() {
    let db = Db::new();
    let store = db.open().await;
    let task = cid("send email");
    assert_eq!(store.intent(task).await.unwrap(), None);
    let err = store.complete_intent(task, cid("r")).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::NotFound, "no intent recorded");

    assert!(store.record_intent(task).await.unwrap());
    assert!(!store.record_intent(task).await.unwrap());
    assert!(store.record_intent(cid("other task")).await.unwrap());
    assert_eq!(store.intent(task).await.unwrap(), Some(IntentState::Open));

    // A crash here leaves the intent open, and it stays open across the restart.
    store.close().await;
    let store = db.open().await;
    assert_eq!(store.intent(task).await.unwrap(), Some(IntentState::Open));
    let mut open = store.open_intents().await.unwrap();
    open.sort();
    let mut expected = vec![task, cid("other task")];
    expected.sort();
    assert_eq!(open, expected);

    let err = store
        .complete_intent(task, cid("unstored receipt"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        StoreErrorKind::NotFound,
        "the receipt must be stored first"
    );
    assert_eq!(store.intent(task).await.unwrap(), Some(IntentState::Open));

    let r = receipt("sent", cid("inv"), task, None, true, false, 100);
    store.put_receipt(&r).await.unwrap();
    store.complete_intent(task, r.receipt_cid).await.unwrap();
    store.complete_intent(task, r.receipt_cid).await.unwrap();
    let settled = Some(IntentState::Completed {
        receipt: r.receipt_cid,
    });
    assert_eq!(store.intent(task).await.unwrap(), settled);
    assert_eq!(store.open_intents().await.unwrap(), vec![cid("other task")]);
    assert!(
        !store.record_intent(task).await.unwrap(),
        "a completed task must not start again"
    );

    let other = receipt("other", cid("inv 2"), task, None, true, false, 101);
    store.put_receipt(&other).await.unwrap();
    let err = store
        .complete_intent(task, other.receipt_cid)
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    assert_eq!(store.intent(task).await.unwrap(), settled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_concurrent_record_intent_wins() {
    let db = Db::new();
    let store = db.open().await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.record_intent(cid("once")).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for call in calls {
        wins += usize::from(call.await.unwrap());
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn pending_jobs_are_listed_in_order_until_removed() {
    let db = Db::new();
    let store = db.open().await;
    assert_eq!(store.pending().await.unwrap(), Vec::new());
    assert!(
        store
            .put_pending(cid("b"), "bacalhau", "job-2", b"two".to_vec())
            .await
            .unwrap()
    );
    assert!(
        store
            .put_pending(cid("a"), "bacalhau", "job-1", b"one".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !store
            .put_pending(cid("a"), "bacalhau", "job-1", b"one".to_vec())
            .await
            .unwrap()
    );
    let err = store
        .put_pending(cid("a"), "bacalhau", "job-9", b"one".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Conflict);
    store.close().await;

    let store = db.open().await;
    let job = |key: &str, id: &str, payload: &[u8]| JobEntry {
        key: cid(key),
        backend: "bacalhau".to_string(),
        job_id: id.to_string(),
        payload: payload.to_vec(),
    };
    assert_eq!(
        store.pending().await.unwrap(),
        vec![job("b", "job-2", b"two"), job("a", "job-1", b"one")]
    );
    assert!(store.remove_pending(cid("b")).await.unwrap());
    assert!(!store.remove_pending(cid("b")).await.unwrap());
    assert_eq!(
        store.pending().await.unwrap(),
        vec![job("a", "job-1", b"one")]
    );
    // Once removed, a key can take a new job.
    assert!(
        store
            .put_pending(cid("b"), "bacalhau", "job-3", Vec::new())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn health_answers_until_the_store_is_closed() {
    let store = SqliteStore::memory().await.unwrap();
    store.health().await.unwrap();
    store.close().await;
    let err = store.health().await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Unavailable);
    let err = store.mark_seen(cid("late"), None).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Unavailable);
}

#[tokio::test]
async fn reopening_a_database_keeps_its_schema_and_data() {
    let db = Db::new();
    let r = receipt(
        "a",
        cid("inv"),
        cid("task"),
        Some(cid("work")),
        true,
        true,
        100,
    );
    let store = db.open().await;
    store.put_receipt(&r).await.unwrap();
    store.put_alias(cid("alias"), r.receipt_cid).await.unwrap();
    store.close().await;

    for _ in 0..2 {
        let store = db.open().await;
        store.health().await.unwrap();
        assert_eq!(
            store.receipt_by_any(cid("alias")).await.unwrap(),
            Some(r.clone())
        );
        assert_eq!(store.memoized(cid("work")).await.unwrap(), Some(r.clone()));
        store.close().await;
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "important notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Open, "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused() {
    let db = Db::new();
    db.open().await.close().await;
    let mut raw = db.raw().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    raw.close().await.unwrap();
    let err = SqliteStore::open(&db.path).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Migrate, "{err}");
}

#[tokio::test]
async fn damaged_rows_are_reported_as_corrupt_not_panics() {
    let db = Db::new();
    let store = db.open().await;
    store.revoke(cid("good"), cid("rev"), 1).await.unwrap();
    store.record_intent(cid("task")).await.unwrap();
    let mut raw = db.raw().await;
    for sql in [
        "INSERT INTO revocations (delegation, revocation, revoked_at) VALUES (x'ff00', x'00', 1)",
        "INSERT INTO pending_jobs (key, backend, job_id, payload) VALUES (x'', 'b', 'j', x'')",
        // A valid CID followed by a stray byte.
        "INSERT INTO intents (task_key) VALUES (x'01551220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85500')",
    ] {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();

    assert_eq!(
        store.revoked().await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        store.pending().await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        store.open_intents().await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    // Lookups by key still work around the damage.
    assert!(store.is_revoked(cid("good")).await.unwrap());
    assert_eq!(
        store.intent(cid("task")).await.unwrap(),
        Some(IntentState::Open)
    );
}

#[test]
fn errors_name_the_operation_and_kind() {
    let err = ucan_gateway::store::StoreError::new(
        StoreErrorKind::Conflict,
        "put_blob",
        "blob x differs",
    );
    assert_eq!(
        err.to_string(),
        "store put_blob: conflicts with stored data: blob x differs"
    );
}
