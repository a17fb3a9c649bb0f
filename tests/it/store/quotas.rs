//! Quota counts: charged by commits. An invocation is counted only while its window has one left,
//! exactly when commits race on several stores sharing the data, and a commit over a quota writes
//! nothing; metered use (fuel, run time, jobs) is added as it is, past the limit too.

use std::sync::Arc;

use ucan_gateway::store::{Commit, Metered, Outcome, QuotaCharge, QuotaUsage, Store};

use super::{cid, receipt};

/// A charge of one invocation of `key`'s quota, which allows `limit` per window.
fn charge(key: &str, window: i64, limit: u64) -> QuotaCharge {
    QuotaCharge {
        key: cid(key),
        window,
        until: window + 60,
        invocations: Some(limit),
        metered: Metered::default(),
    }
}

/// A charge of metered use alone.
fn metered(key: &str, window: i64, fuel: u64, cpu_ms: u64, jobs: u64) -> QuotaCharge {
    QuotaCharge {
        key: cid(key),
        window,
        until: window + 60,
        invocations: None,
        metered: Metered { fuel, cpu_ms, jobs },
    }
}

fn invocations(n: u64) -> QuotaUsage {
    QuotaUsage {
        invocations: n,
        metered: Metered::default(),
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
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), invocations(2));
        // Over it: refused, and neither the receipt, nor the replay key, nor another quota's
        // use is written.
        let other = charge("e", 600, 5);
        let outcome = store.commit(answered("c", vec![other, q])).await.unwrap();
        assert_eq!(outcome, Outcome::QuotaExceeded(q));
        assert_eq!(store.receipt_by_invocation(cid("c")).await.unwrap(), None);
        assert!(!store.seen(cid("key c")).await.unwrap());
        assert_eq!(
            store.quota_used(other.key, 600).await.unwrap(),
            QuotaUsage::default()
        );
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), invocations(2));
        // A later window starts afresh; a limit of zero grants nothing.
        let later = charge("d", 660, 2);
        let outcome = store.commit(answered("d", vec![later])).await.unwrap();
        assert_eq!(outcome, Outcome::Committed);
        assert_eq!(store.quota_used(q.key, 660).await.unwrap(), invocations(1));
        let none = charge("z", 600, 0);
        let outcome = store.commit(answered("z", vec![none])).await.unwrap();
        assert_eq!(outcome, Outcome::QuotaExceeded(none));
        // A replayed commit charges nothing.
        let outcome = store.commit(answered("d", vec![later])).await.unwrap();
        assert_eq!(outcome, Outcome::Replayed);
        assert_eq!(store.quota_used(q.key, 660).await.unwrap(), invocations(1));
        store.close().await;

        // Durable, and purged once the window has ended.
        let store = backend.open().await;
        assert_eq!(store.quota_used(q.key, 600).await.unwrap(), invocations(2));
        // One window ended: its one row goes.
        assert_eq!(store.purge_quotas(661).await.unwrap(), 1);
        assert_eq!(
            store.quota_used(q.key, 600).await.unwrap(),
            QuotaUsage::default()
        );
        assert_eq!(store.quota_used(q.key, 660).await.unwrap(), invocations(1));
    }
}

#[tokio::test]
async fn metered_use_is_added_past_any_limit_and_only_an_invocation_refuses() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let name = backend.name();
        // Metered use and an invocation in one charge, then metered use alone: added up.
        let both = QuotaCharge {
            metered: Metered {
                fuel: 700,
                cpu_ms: 1500,
                jobs: 0,
            },
            ..charge("m", 0, 2)
        };
        let outcome = store.commit(answered("a", vec![both])).await.unwrap();
        assert_eq!(outcome, Outcome::Committed, "{name}");
        let job = metered("m", 0, 0, 0, 1);
        let outcome = store
            .commit(Commit {
                quotas: vec![job, job],
                ..Commit::default()
            })
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Committed, "{name}");
        let used = store.quota_used(cid("m"), 0).await.unwrap();
        assert_eq!(
            used,
            QuotaUsage {
                invocations: 1,
                metered: Metered {
                    fuel: 700,
                    cpu_ms: 1500,
                    jobs: 2
                }
            },
            "{name}"
        );

        // The invocation limit reached: a commit charging one more writes nothing, its metered use
        // included, while metered use alone is still added (it was consumed).
        let outcome = store.commit(answered("b", vec![both])).await.unwrap();
        assert_eq!(outcome, Outcome::Committed, "{name}");
        let over = QuotaCharge {
            metered: Metered {
                fuel: 1,
                cpu_ms: 1,
                jobs: 1,
            },
            ..charge("m", 0, 2)
        };
        let outcome = store.commit(answered("c", vec![over])).await.unwrap();
        assert_eq!(outcome, Outcome::QuotaExceeded(over), "{name}");
        let before = store.quota_used(cid("m"), 0).await.unwrap();
        assert_eq!(before.invocations, 2, "{name}");
        assert_eq!(before.metered.fuel, 1400, "{name}");
        let outcome = store
            .commit(answered("d", vec![metered("m", 0, 5, 0, 0)]))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Committed, "{name}");
        assert_eq!(
            store.quota_used(cid("m"), 0).await.unwrap().metered.fuel,
            1405,
            "{name}"
        );

        // A charge of nothing writes no row; a count near the largest one saturates.
        let outcome = store
            .commit(answered("e", vec![metered("empty", 0, 0, 0, 0)]))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Committed, "{name}");
        assert_eq!(
            store.quota_used(cid("empty"), 0).await.unwrap(),
            QuotaUsage::default()
        );
        assert_eq!(store.purge_quotas(i64::MAX).await.unwrap(), 1, "{name}");
        for tag in ["f", "g"] {
            let huge = metered("huge", 0, u64::MAX, i64::MAX as u64 / 2 + 7, 0);
            let outcome = store.commit(answered(tag, vec![huge])).await.unwrap();
            assert_eq!(outcome, Outcome::Committed, "{name}");
        }
        let huge = store.quota_used(cid("huge"), 0).await.unwrap().metered;
        assert_eq!(huge.fuel, i64::MAX as u64, "{name}");
        assert_eq!(huge.cpu_ms, i64::MAX as u64, "{name}");
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
        assert_eq!(
            stores[0].quota_used(q.key, 0).await.unwrap(),
            invocations(5)
        );
    }
}

#[tokio::test]
async fn metered_use_racing_on_two_stores_is_all_counted() {
    for backend in super::backends().await {
        let stores: Vec<Arc<dyn Store>> = vec![backend.open().await, backend.open().await];
        let mut tasks = Vec::new();
        for i in 0..40_u64 {
            let store = Arc::clone(&stores[(i % 2) as usize]);
            tasks.push(tokio::spawn(async move {
                let used = metered("racing", 0, i + 1, 10, 1);
                store
                    .commit(answered(&format!("m{i}"), vec![used]))
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), Outcome::Committed);
        }
        let used = stores[1].quota_used(cid("racing"), 0).await.unwrap();
        assert_eq!(
            used,
            QuotaUsage {
                invocations: 0,
                metered: Metered {
                    fuel: (1..=40).sum(),
                    cpu_ms: 400,
                    jobs: 40
                }
            },
            "{}",
            backend.name()
        );
    }
}
