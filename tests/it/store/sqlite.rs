//! What only the SQLite backend can meet: a file that is not a database, a database from a newer
//! build, rows damaged by another program, a write-ahead log that must not grow with the load.

use rusqlite::Connection;
use ucan_gateway::store::{
    Commit, IntentState, Metered, Outcome, QuotaCharge, SqliteStore, SqliteTuning, Store,
    StoreErrorKind,
};

use super::{cid, receipt};

/// A database file in a fresh temporary directory, removed with it.
struct Db {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Db {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        Db { _dir: dir, path }
    }

    async fn open(&self) -> std::sync::Arc<dyn Store> {
        std::sync::Arc::new(SqliteStore::open(&self.path).await.unwrap())
    }

    /// A raw connection, to damage the file the way only another program could.
    fn raw(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }

    /// A raw connection to the file at schema version `version`, as an older build left it.
    fn at_version(&self, version: usize) -> Connection {
        const MIGRATIONS: [&str; 5] = [
            include_str!("../../../migrations/sqlite/0001_init.sql"),
            include_str!("../../../migrations/sqlite/0002_commits.sql"),
            include_str!("../../../migrations/sqlite/0003_proofs.sql"),
            include_str!("../../../migrations/sqlite/0004_quotas.sql"),
            include_str!("../../../migrations/sqlite/0005_quota_resources.sql"),
        ];
        let raw = self.raw();
        for sql in &MIGRATIONS[..version] {
            raw.execute_batch(sql).unwrap();
        }
        raw.pragma_update(None, "user_version", version).unwrap();
        raw
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
    db.raw().pragma_update(None, "user_version", 9999).unwrap();
    let err = SqliteStore::open(&db.path).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Migrate, "{err}");
}

#[tokio::test]
async fn a_database_of_the_earlier_store_is_brought_up_to_date() {
    // The schema the earlier (sqlx-based) store left: its migration table and the first schema.
    let db = Db::new();
    let raw = db.raw();
    raw.execute_batch(include_str!("../../../migrations/sqlite/0001_init.sql"))
        .unwrap();
    raw.execute_batch(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
         execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations VALUES (1, 'init', 0, 1, x'00', 0);",
    )
    .unwrap();
    raw.execute(
        "INSERT INTO revocations (delegation, revocation, revoked_at) VALUES (?1, ?2, 5)",
        [cid("old").to_bytes(), cid("by").to_bytes()],
    )
    .unwrap();
    drop(raw);
    let store = db.open().await;
    assert!(store.is_revoked(cid("old")).await.unwrap(), "data kept");
    assert_eq!(store.revocations_since(0).await.unwrap().len(), 1);
    assert!(
        store.mark_seen(cid("k"), None).await.unwrap(),
        "the new schema works"
    );
}

#[tokio::test]
async fn quota_counts_of_a_database_from_before_metered_quotas_are_kept() {
    // A file at schema version 4: quotas counted invocations only.
    let db = Db::new();
    let raw = db.at_version(4);
    raw.execute(
        "INSERT INTO quota_usage (key, window_start, window_end, used) VALUES (?1, 0, 60, 3)",
        [cid("old quota").to_bytes()],
    )
    .unwrap();
    drop(raw);
    let store = db.open().await;
    let used = store.quota_used(cid("old quota"), 0).await.unwrap();
    assert_eq!(used.invocations, 3, "the count is kept");
    assert_eq!(
        used.metered,
        Metered::default(),
        "metered counts start at zero"
    );
    let charge = QuotaCharge {
        key: cid("old quota"),
        window: 0,
        until: 60,
        invocations: Some(4),
        metered: Metered {
            fuel: 9,
            ..Metered::default()
        },
    };
    let commit = Commit {
        quotas: vec![charge],
        ..Commit::default()
    };
    assert_eq!(
        store.commit(commit.clone()).await.unwrap(),
        Outcome::Committed
    );
    assert_eq!(
        store.commit(commit).await.unwrap(),
        Outcome::QuotaExceeded(charge),
        "the old count still limits"
    );
    let used = store.quota_used(cid("old quota"), 0).await.unwrap();
    assert_eq!((used.invocations, used.metered.fuel), (4, 9));
}

#[tokio::test]
async fn delegations_kept_before_issuers_were_counted_still_count_against_the_cap() {
    // A file at schema version 5: the cap per issuer was checked by counting `proofs` rows.
    let db = Db::new();
    let raw = db.at_version(5);
    for tag in ["old 1", "old 2"] {
        raw.execute(
            "INSERT INTO proofs (cid, issuer, audience, bytes) \
             VALUES (?1, 'did:key:alice', 'did:key:bob', x'00')",
            [cid(tag).to_bytes()],
        )
        .unwrap();
    }
    drop(raw);
    let store = db.open().await;
    assert_eq!(store.proofs_of("did:key:alice").await.unwrap(), 2);
    let kept = |tag: &str| ucan_gateway::store::StoredDelegation {
        cid: cid(tag),
        issuer: "did:key:alice".into(),
        audience: "did:key:carol".into(),
        expires_at: None,
        bytes: vec![1],
    };
    let commit = Commit::default().with_proofs(vec![kept("new 1"), kept("new 2")], 3);
    assert_eq!(store.commit(commit).await.unwrap(), Outcome::Committed);
    assert_eq!(
        store.proofs_of("did:key:alice").await.unwrap(),
        3,
        "the two kept before and one of the new ones: the old rows count"
    );
    let found = store
        .proofs(&[cid("new 1"), cid("new 2")], 0)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[tokio::test]
async fn damaged_rows_are_reported_as_corrupt_not_panics() {
    let db = Db::new();
    let store = db.open().await;
    store.revoke(cid("good"), cid("rev"), 1).await.unwrap();
    assert!(super::open_intent(store.as_ref(), cid("task"), 10).await);
    let raw = db.raw();
    for sql in [
        "INSERT INTO revocations (delegation, revocation, revoked_at) VALUES (x'ff00', x'00', 1)",
        "INSERT INTO pending_jobs (key, backend, job_id, payload) VALUES (x'', 'b', 'j', x'')",
        // A valid CID followed by a stray byte.
        "INSERT INTO intents (task_key) VALUES (x'01551220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85500')",
    ] {
        raw.execute_batch(sql).unwrap();
    }
    drop(raw);

    assert_eq!(
        store.revocations_since(0).await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        store.pending().await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    assert_eq!(
        store.interrupted(i64::MAX).await.unwrap_err().kind,
        StoreErrorKind::Corrupt
    );
    // Lookups by key still work around the damage.
    assert!(store.is_revoked(cid("good")).await.unwrap());
    assert_eq!(
        super::intent_state(store.as_ref(), cid("task")).await,
        Some(IntentState::Open)
    );
}

/// Under steady writes a passive checkpoint never catches up, and a WAL only starts over once every
/// frame in it is copied: without the writer finishing checkpoints between batches, the WAL would
/// hold every commit since the store opened (about 11 KiB each here).
#[tokio::test]
async fn the_write_ahead_log_stays_bounded_under_steady_writes() {
    const COMMITS: usize = 8_000;
    const CALLERS: usize = 16;
    let db = Db::new();
    // A low bound and a short interval, so a test's few thousand commits can tell it from
    // unbounded growth; the defaults are the same mechanism.
    let tuning = SqliteTuning {
        wal_restart_frames: 4_096,
        checkpoint_every: std::time::Duration::from_millis(100),
        ..SqliteTuning::default()
    };
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(SqliteStore::open_tuned(&db.path, tuning).await.unwrap());
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                for n in (caller..COMMITS).step_by(CALLERS) {
                    let ran = cid(&format!("steady {n}"));
                    let mut stored =
                        receipt(&format!("steady {n}"), ran, ran, Some(ran), true, true, 1);
                    stored.bytes.resize(1024, 7);
                    let commit = Commit::default()
                        .with_claim(ran, Some(2_000_000_000))
                        .with_receipt(stored);
                    assert_eq!(store.commit(commit).await.unwrap(), Outcome::Committed);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let wal = std::fs::metadata(db.path.with_extension("db-wal"))
        .unwrap()
        .len();
    let written = (COMMITS * 1024) as u64;
    // The receipts alone are 8 MiB; every page they dirty again is more. A WAL starting over keeps
    // to the frames of about one checkpoint interval.
    assert!(
        wal < 4 * written,
        "the WAL holds {wal} bytes after {COMMITS} commits of 1 KiB receipts"
    );
    store.close().await;
}

/// The in-memory filters that let lookups skip SQL never change an answer: not on a reopened
/// database, whose filters are filled from its tables, and not while they are filled again and
/// again (a small capacity) as commits race each scan.
#[tokio::test]
async fn lookups_answer_the_same_while_their_filters_are_filled_again() {
    const CALLERS: usize = 16;
    const COMMITS: usize = 6_000;
    let db = Db::new();
    let tuning = SqliteTuning {
        filter_capacity: 1_000,
        ..SqliteTuning::default()
    };
    let kept = |n: usize| n.is_multiple_of(40);
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(SqliteStore::open_tuned(&db.path, tuning).await.unwrap());
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                for n in (caller..COMMITS).step_by(CALLERS) {
                    let ran = cid(&format!("race {n}"));
                    let work = cid(&format!("work {n}"));
                    // Most keys have expired and are purged, so the tables stay small while the
                    // filters take a key per commit and are filled again every 1,000.
                    let commit = if kept(n) {
                        Commit::default()
                            .with_claim(ran, None)
                            .with_receipt(receipt(
                                &format!("race {n}"),
                                ran,
                                ran,
                                Some(work),
                                true,
                                true,
                                1,
                            ))
                    } else {
                        Commit::default().with_claim(ran, Some(1))
                    };
                    assert_eq!(store.commit(commit).await.unwrap(), Outcome::Committed);
                    if kept(n) {
                        // Found at once, whichever filters answer while a scan races the commit.
                        assert!(
                            store.seen(ran).await.unwrap(),
                            "key {n} right after its commit"
                        );
                        assert!(store.memoized(work).await.unwrap().is_some(), "work {n}");
                    }
                    if n % 200 == 0 {
                        store.purge_seen(2).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    let check = |store: std::sync::Arc<dyn Store>| async move {
        for n in (0..COMMITS).filter(|&n| kept(n)) {
            let (key, work) = (cid(&format!("race {n}")), cid(&format!("work {n}")));
            assert!(store.seen(key).await.unwrap(), "key {n} was stored");
            assert!(
                store.memoized(work).await.unwrap().is_some(),
                "work {n} was stored"
            );
        }
        for n in 0..500 {
            let fresh = cid(&format!("never stored {n}"));
            assert!(!store.seen(fresh).await.unwrap());
            assert!(store.memoized(fresh).await.unwrap().is_none());
        }
    };
    check(std::sync::Arc::clone(&store)).await;
    // Once the last scan (of a few hundred rows) has ended, too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    check(std::sync::Arc::clone(&store)).await;
    store.close().await;
    drop(store);

    // Reopened: checked both while the first scan may still run and after it ended.
    let store = db.open().await;
    check(std::sync::Arc::clone(&store)).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    check(std::sync::Arc::clone(&store)).await;
    store.close().await;
}
