//! Replay keys: claimed once, by one of any number of concurrent callers or processes, kept across a
//! restart, purged only when expired.

use std::sync::Arc;

use super::cid;

#[tokio::test]
async fn mark_seen_reports_a_replay_even_after_a_restart() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let key = cid("invocation");
        assert!(store.mark_seen(key, Some(2_000)).await.unwrap());
        assert!(!store.mark_seen(key, Some(2_000)).await.unwrap());
        assert!(store.mark_seen(cid("another"), None).await.unwrap());
        store.close().await;

        let store = backend.open().await;
        assert!(!store.mark_seen(key, Some(2_000)).await.unwrap());
        assert!(!store.mark_seen(cid("another"), None).await.unwrap());
        assert!(store.mark_seen(cid("fresh"), None).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_fifty_concurrent_mark_seen_calls_wins() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_never_both_win_a_key() {
    for backend in super::backends().await {
        // Two gateways sharing a file contend for SQLite's lock rather than one in-memory queue.
        let first = backend.open().await;
        let second = backend.open().await;
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
}

#[tokio::test]
async fn purge_seen_removes_only_expired_keys() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}
