//! Pending jobs: listed in order until removed, a key never taking a second job.

use std::sync::Arc;

use super::cid;
use ucan_gateway::store::{JobEntry, StoreErrorKind};

#[tokio::test]
async fn pending_jobs_are_listed_in_order_until_removed() {
    for backend in super::backends().await {
        let store = backend.open().await;
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

        let store = backend.open().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_leased_to_one_holder_until_its_lease_ends() {
    for backend in super::backends().await {
        let store = backend.open().await;
        for i in 0..10 {
            store
                .put_pending(cid(&format!("job {i}")), "b", &format!("j{i}"), Vec::new())
                .await
                .unwrap();
        }
        // Two holders leasing at once split the jobs: none is held by both.
        let (a, b) = (Arc::clone(&store), Arc::clone(&store));
        let (got_a, got_b) = tokio::join!(
            tokio::spawn(async move { a.lease_jobs("a", 100, 130, 6).await.unwrap() }),
            tokio::spawn(async move { b.lease_jobs("b", 100, 130, 6).await.unwrap() }),
        );
        let (got_a, got_b) = (got_a.unwrap(), got_b.unwrap());
        assert_eq!(got_a.len() + got_b.len(), 10, "{}", backend.name());
        assert!(got_a.iter().all(|j| !got_b.contains(j)));

        // A holder renews its own; nobody else takes them before the lease ends...
        assert_eq!(store.lease_jobs("a", 110, 140, 100).await.unwrap(), got_a);
        assert_eq!(store.lease_jobs("c", 120, 150, 100).await.unwrap().len(), 0);
        // ...and after it ends, another holder takes them over, oldest first.
        let taken = store.lease_jobs("c", 145, 175, 100).await.unwrap();
        let mut expected: Vec<_> = store.pending().await.unwrap();
        expected.retain(|j| got_a.contains(j) || got_b.contains(j));
        assert_eq!(taken, expected);
        assert_eq!(
            store.lease_jobs("a", 150, 180, 100).await.unwrap(),
            Vec::new()
        );
    }
}
