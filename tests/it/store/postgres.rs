//! What only the PostgreSQL backend meets: a database that goes away and comes back, a schema from a
//! newer build, announcements of other processes' commits; and picking a backend by URL.

use std::time::{Duration, Instant};

use ucan_gateway::store::{
    Commit, Metered, Outcome, PostgresStore, QuotaCharge, QuotaStore, ReceiptStore, ReplayStore,
    Store, StoreErrorKind,
};

use super::{cid, fresh_schema, postgres_url, receipt};
use crate::support::postgres::{Relay, through};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_unavailable_with_nothing_written_and_then_serves_again() {
    let Some(base) = postgres_url("PostgreSQL store tests") else {
        return;
    };
    let direct_url = fresh_schema(&base).await;
    let relay = Relay::to(&direct_url).await;
    let url = format!(
        "{}&connect_timeout=1&statement_timeout=2s",
        through(&direct_url, relay.addr)
    );
    let store = PostgresStore::open(&url).await.unwrap();
    let direct = PostgresStore::open(&direct_url).await.unwrap();
    let first = receipt("first", cid("inv 1"), cid("task 1"), None, true, false, 1);
    let commit = |key: &str, r| Commit::default().with_claim(cid(key), None).with_receipt(r);
    assert_eq!(
        store.commit(commit("key 1", first)).await.unwrap(),
        Outcome::Committed
    );

    relay.cut();
    let second = receipt("second", cid("inv 2"), cid("task 2"), None, true, false, 2);
    let started = Instant::now();
    let err = store
        .commit(commit("key 2", second.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Unavailable, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the connect timeout bounds the wait: {:?}",
        started.elapsed()
    );
    assert_eq!(
        store.health().await.unwrap_err().kind,
        StoreErrorKind::Unavailable
    );
    assert!(!direct.seen(cid("key 2")).await.unwrap(), "nothing written");
    assert_eq!(
        direct.receipt_by_cid(second.receipt_cid).await.unwrap(),
        None
    );

    relay.restore();
    let started = Instant::now();
    let outcome = loop {
        match store.commit(commit("key 2", second.clone())).await {
            Ok(outcome) => break outcome,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                assert_eq!(e.kind, StoreErrorKind::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store never came back: {e}"),
        }
    };
    assert_eq!(outcome, Outcome::Committed);
    assert_eq!(
        direct.receipt_by_cid(second.receipt_cid).await.unwrap(),
        Some(second)
    );
    store.health().await.unwrap();
}

#[tokio::test]
async fn a_schema_from_a_newer_build_is_refused() {
    let Some(base) = postgres_url("PostgreSQL store tests") else {
        return;
    };
    let url = fresh_schema(&base).await;
    PostgresStore::open(&url).await.unwrap().close().await;
    let schema = url.rsplit("schema=").next().unwrap().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\"._sqlx_migrations \
         (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let err = PostgresStore::open(&url).await.unwrap_err();
    assert_eq!(err.kind, StoreErrorKind::Migrate, "{err}");
}

#[tokio::test]
async fn quota_counts_of_a_schema_from_before_metered_quotas_are_kept() {
    let Some(base) = postgres_url("PostgreSQL store tests") else {
        return;
    };
    let url = fresh_schema(&base).await;
    let schema = url.rsplit("schema=").next().unwrap().to_owned();
    // The schema as the build before metered quotas left it: its two migrations applied, by the
    // same migrator, so their checksums are the ones recorded.
    let older = tempfile::tempdir().unwrap();
    for name in ["0001_init.sql", "0002_proofs_quotas.sql"] {
        let from = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations/postgres")
            .join(name);
        std::fs::copy(from, older.path().join(name)).unwrap();
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    for sql in [
        format!("CREATE SCHEMA \"{schema}\""),
        format!("SET search_path TO \"{schema}\""),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::migrate::Migrator::new(older.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO quota_usage (key, window_start, window_end, used) VALUES ($1, 0, 60, 3)",
    )
    .bind(cid("old quota").to_bytes())
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let store = PostgresStore::open(&url).await.unwrap();
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
            jobs: 1,
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
        Outcome::QuotaExceeded(charge)
    );
    let used = store.quota_used(cid("old quota"), 0).await.unwrap();
    assert_eq!((used.invocations, used.metered.jobs), (4, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_of_receipts_and_revocations_are_announced_to_every_process() {
    let Some(base) = postgres_url("PostgreSQL store tests") else {
        return;
    };
    let url = fresh_schema(&base).await;
    let (writer, reader) = (
        PostgresStore::open(&url).await.unwrap(),
        PostgresStore::open(&url).await.unwrap(),
    );
    let mut changes = reader.changes().expect("PostgreSQL announces commits");
    let before = *changes.borrow_and_update();

    // A bare replay key is not announced: nobody waits for one.
    writer.mark_seen(cid("key"), None).await.unwrap();
    let r = receipt("r", cid("inv"), cid("task"), None, true, false, 1);
    writer.put_receipt(&r).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("the receipt was announced")
        .unwrap();
    let after_receipt = *changes.borrow_and_update();
    assert_eq!(after_receipt.receipts, before.receipts + 1);
    assert_eq!(after_receipt.revocations, before.revocations);

    writer.revoke(cid("d"), cid("rev"), 1).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("the revocation was announced")
        .unwrap();
    assert_eq!(changes.borrow().revocations, after_receipt.revocations + 1);

    // A replay writes nothing and announces nothing.
    let replay = Commit::default()
        .with_claim(cid("key"), None)
        .with_receipt(receipt(
            "again",
            cid("inv"),
            cid("task"),
            None,
            true,
            false,
            2,
        ));
    assert_eq!(writer.commit(replay).await.unwrap(), Outcome::Replayed);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), changes.changed())
            .await
            .is_err(),
        "a replay was announced"
    );
}

#[tokio::test]
async fn the_store_url_picks_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let store = ucan_gateway::store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert!(store.mark_seen(cid("k"), None).await.unwrap());
    assert!(store.changes().is_none(), "SQLite announces nothing");
    store.close().await;
    assert!(path.exists());

    for url in [
        "mysql://db/gw",
        "redis://127.0.0.1",
        "gateway.db",
        "sqlite:",
    ] {
        let Err(err) = ucan_gateway::store::open(url).await else {
            panic!("{url} opened")
        };
        assert_eq!(err.kind, StoreErrorKind::Open, "{url}");
        assert!(
            err.message.contains("sqlite:") && err.message.contains("postgres"),
            "{url}: {err}"
        );
    }

    if let Some(base) = postgres_url("PostgreSQL store tests") {
        let url = fresh_schema(&base).await;
        for url in [url.clone(), url.replacen("postgres://", "postgresql://", 1)] {
            let store = ucan_gateway::store::open(&url).await.unwrap();
            assert!(store.changes().is_some(), "{url}");
            store.health().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_on_a_new_schema_all_open_it() {
    let Some(base) = postgres_url("PostgreSQL store tests") else {
        return;
    };
    let url = fresh_schema(&base).await;
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opening {
        stores.push(open.await.unwrap().expect("every replica opens the store"));
    }
    assert!(stores[0].mark_seen(cid("k"), None).await.unwrap());
    assert!(!stores[3].mark_seen(cid("k"), None).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_database_off_mid_load_leaves_every_commit_whole_or_absent() {
    let Some(base) = postgres_url("PostgreSQL store tests") else {
        return;
    };
    let direct_url = fresh_schema(&base).await;
    let relay = std::sync::Arc::new(Relay::to(&direct_url).await);
    let url = format!(
        "{}&connect_timeout=1&statement_timeout=2s",
        through(&direct_url, relay.addr)
    );
    let store = std::sync::Arc::new(PostgresStore::open(&url).await.unwrap());

    // Callers commit invocations back to back while the database is cut off and restored.
    let stop = Instant::now() + Duration::from_millis(2500);
    let callers: Vec<_> = (0..16)
        .map(|caller| {
            let store = std::sync::Arc::clone(&store);
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut n = 0;
                while Instant::now() < stop {
                    let tag = format!("{caller}/{n}");
                    let r = receipt(&tag, cid(&tag), cid(&tag), None, true, false, 1);
                    let commit = Commit::default()
                        .with_claim(cid(&format!("key {tag}")), None)
                        .with_receipt(r.clone());
                    let started = Instant::now();
                    let answer = store.commit(commit).await;
                    assert!(
                        started.elapsed() < Duration::from_secs(4),
                        "a commit waited {:?}",
                        started.elapsed()
                    );
                    answers.push((tag, r, answer.map_err(|e| e.kind)));
                    n += 1;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay.cut();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    relay.restore();

    let mut answers = Vec::new();
    for caller in callers {
        answers.extend(caller.await.unwrap());
    }
    // What the database holds, read once.
    let schema = direct_url.rsplit("schema=").next().unwrap().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    let mut column = async |sql: String| -> std::collections::HashSet<Vec<u8>> {
        sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .collect()
    };
    let keys = column(format!("SELECT key FROM \"{schema}\".seen")).await;
    let receipts = column(format!("SELECT receipt_cid FROM \"{schema}\".receipts")).await;
    let (mut committed, mut failed) = (0, 0);
    for (tag, r, answer) in answers {
        let claimed = keys.contains(&cid(&format!("key {tag}")).to_bytes());
        let stored = receipts.contains(&r.receipt_cid.to_bytes());
        assert_eq!(claimed, stored, "{tag}: half of a commit was written");
        match answer {
            Ok(outcome) => {
                assert_eq!(outcome, Outcome::Committed);
                assert!(stored, "{tag}: a commit answered Ok is not in the database");
                committed += 1;
            }
            // A connection lost during COMMIT may or may not have committed: either way whole.
            Err(kind) => {
                assert_eq!(kind, StoreErrorKind::Unavailable, "{tag}");
                failed += 1;
            }
        }
    }
    assert!(
        committed > 0 && failed > 0,
        "{committed} committed, {failed} failed"
    );
    // And commits succeed again.
    let r = receipt("after", cid("after"), cid("after"), None, true, false, 1);
    let started = Instant::now();
    while store.put_receipt(&r).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
