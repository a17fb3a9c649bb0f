//! Commits: everything in one or nothing, a refused write alone undone, errors that name themselves.

use std::sync::Arc;

use super::cid;
use ucan_gateway::store::StoreErrorKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_does_not_spoil_the_writes_committed_with_it() {
    for backend in super::backends().await {
        // Writes issued together share a commit; one naming a missing receipt must fail alone.
        let store = backend.open().await;
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
        let store = backend.open().await;
        for i in (0..40).step_by(2) {
            assert!(
                !store
                    .mark_seen(cid(&format!("call {i}")), None)
                    .await
                    .unwrap()
            );
        }
    }
}

#[tokio::test]
async fn health_answers_until_the_store_is_closed() {
    for backend in super::backends().await {
        let store = backend.open().await;
        store.health().await.unwrap();
        store.close().await;
        let err = store.health().await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Unavailable);
        let err = store.mark_seen(cid("late"), None).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Unavailable);
    }
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

#[tokio::test]
async fn a_commit_writes_everything_or_nothing() {
    use super::receipt;
    use ucan_gateway::store::{Commit, JobEntry, Outcome};
    for backend in super::backends().await {
        let store = backend.open().await;
        let key = cid("invocation key");
        let first = receipt("first", cid("inv"), cid("task"), None, true, false, 1);
        let job = JobEntry {
            key: cid("job"),
            backend: "b".into(),
            job_id: "j".into(),
            payload: Vec::new(),
        };
        let commit = Commit::default()
            .with_claim(key, None)
            .with_receipt(first.clone())
            .with_job(job.clone());
        assert_eq!(store.commit(commit).await.unwrap(), Outcome::Committed);
        assert_eq!(
            store.receipt_by_invocation(cid("inv")).await.unwrap(),
            Some(first.clone())
        );

        // The same key again: a replay, and nothing of it is written.
        let second = receipt("second", cid("inv"), cid("task"), None, true, false, 2);
        let replay = Commit::default()
            .with_claim(key, None)
            .with_receipt(second.clone())
            .without_job(cid("job"));
        assert_eq!(store.commit(replay).await.unwrap(), Outcome::Replayed);
        assert_eq!(
            store.receipt_by_cid(second.receipt_cid).await.unwrap(),
            None
        );
        assert_eq!(store.pending().await.unwrap(), vec![job.clone()]);

        // A conflicting receipt fails the commit, and its claim is not taken.
        let mut forged = first.clone();
        forged.bytes = b"forged".to_vec();
        let conflicting = Commit::default()
            .with_claim(cid("another key"), None)
            .with_receipt(forged);
        let err = store.commit(conflicting).await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Conflict, "{}", backend.name());
        assert!(!store.seen(cid("another key")).await.unwrap());
        assert_eq!(
            store.receipt_by_cid(first.receipt_cid).await.unwrap(),
            Some(first)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_concurrent_answers_to_one_invocation_exactly_one_is_stored() {
    use super::receipt;
    use ucan_gateway::store::{Commit, Outcome};
    for backend in super::backends().await {
        // Two processes on one store, as two replicas answering the same invocation.
        let stores = [backend.open().await, backend.open().await];
        let key = cid("raced invocation");
        let mut calls = Vec::new();
        for i in 0..16 {
            let store = Arc::clone(&stores[i % 2]);
            calls.push(tokio::spawn(async move {
                let r = receipt(
                    &format!("answer {i}"),
                    cid("inv"),
                    cid("task"),
                    None,
                    true,
                    false,
                    1,
                );
                let commit = Commit::default().with_claim(key, None).with_receipt(r);
                store.commit(commit).await.unwrap()
            }));
        }
        let mut committed = 0;
        for call in calls {
            if call.await.unwrap() == Outcome::Committed {
                committed += 1;
            }
        }
        assert_eq!(committed, 1, "{}", backend.name());
        let stored = stores[0].receipt_by_invocation(cid("inv")).await.unwrap();
        assert!(stored.is_some());
    }
}
