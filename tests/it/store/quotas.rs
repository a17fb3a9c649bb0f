//! Quota counts: charged by commits, one use each, never past the limit, exact when commits race
//! on several stores sharing the data; a commit over a quota writes nothing.

use std::sync::Arc;

use ucan_gateway::store::{Commit, Outcome, QuotaCharge, Store};

use super::{cid, receipt};

fn charge(key: &str, window: i64, limit: u64) -> QuotaCharge {
    QuotaCharge {
        key: cid(key),
        window,
        until: window + 60,
        limit,
    }
}

fn answered(tag: &str, charges: Vec<QuotaCharge>) -> Commit {
    Commit {
        quotas: charges,
        ..Commit::default()
            .with_claim(cid(&format!("key {tag}")), None)
            .with_receipt(receipt(tag, cid(tag), cid(tag), None, true, false, 1))
    }
}

#[tokio::test]
async fn a_quota_grants_its_limit_and_a_commit_over_it_writes_nothing() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let q = charge("d", 600, 2);
        for tag in ["a", "b"] {
            let outcome = store.commit(answered(tag, vec![q])).await.unwrap();
            assert_eq!(outcome, Outcome::Committed, "{}", backend.name());
        }
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), 2);
        // Over it: refused, and neither the receipt, nor the replay key, nor another quota's
        // use is written.
        let other = charge("e", 600, 5);
        let outcome = store.commit(answered("c", vec![other, q])).await.unwrap();
        assert_eq!(outcome, Outcome::QuotaExceeded(q));
        assert_eq!(store.receipt_by_invocation(cid("c")).await.unwrap(), None);
        assert!(!store.seen(cid("key c")).await.unwrap());
        assert_eq!(store.quota_used(other.key, 600).await.unwrap(), 0);
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), 2);
        // A later window starts afresh; a limit of zero grants nothing.
        let later = charge("d", 660, 2);
        let outcome = store.commit(answered("d", vec![later])).await.unwrap();
        assert_eq!(outcome, Outcome::Committed);
        assert_eq!(store.quota_used(q.key, 660).await.unwrap(), 1);
        let none = charge("z", 600, 0);
        let outcome = store.commit(answered("z", vec![none])).await.unwrap();
        assert_eq!(outcome, Outcome::QuotaExceeded(none));
        // A replayed commit charges nothing.
        let outcome = store.commit(answered("d", vec![later])).await.unwrap();
        assert_eq!(outcome, Outcome::Replayed);
        assert_eq!(store.quota_used(q.key, 660).await.unwrap(), 1);
        store.close().await;

        // Durable, and purged once the window has ended.
        let store = backend.open().await;
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), 2);
        // One window ended: its one row goes.
        assert_eq!(store.purge_quotas(661).await.unwrap(), 1);
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), 0);
        assert_eq!(store.quota_used(q.key, 660).await.unwrap(), 1);
    }
}

#[tokio::test]
async fn of_commits_racing_on_two_stores_exactly_the_limit_are_applied() {
    for backend in super::backends().await {
        let stores: Vec<Arc<dyn Store>> = vec![backend.open().await, backend.open().await];
        let q = charge("shared", 0, 5);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = Arc::clone(&stores[i % 2]);
            tasks.push(tokio::spawn(async move {
                store
                    .commit(answered(&format!("r{i}"), vec![q]))
                    .await
                    .unwrap()
            }));
        }
        let mut committed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Outcome::Committed => committed += 1,
                Outcome::QuotaExceeded(c) => assert_eq!(c, q),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(committed, 5, "{}", backend.name());
        assert_eq!(stores[0].quota_used(q.key, 0).await.unwrap(), 5);
    }
}
