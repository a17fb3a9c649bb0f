//! Intents to run destructive tasks: opened once, completed by a stored receipt, never reopened; an
//! open one past the time its run could take is listed as interrupted.

use std::sync::Arc;

use super::{cid, complete_intent, intent_state, open_intent, receipt};
use ucan_gateway::store::{Commit, IntentChange, IntentState, Outcome, StoreErrorKind};

#[tokio::test]
async fn intents_are_recorded_once_and_completed_by_a_stored_receipt() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let task = cid("send email");
        assert_eq!(store.intent(task).await.unwrap(), None);
        let err = complete_intent(store.as_ref(), task, cid("r"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::NotFound, "no intent recorded");

        assert!(open_intent(store.as_ref(), task, 500).await);
        assert!(!open_intent(store.as_ref(), task, 500).await);
        assert!(open_intent(store.as_ref(), cid("other task"), 400).await);
        assert_eq!(
            intent_state(store.as_ref(), task).await,
            Some(IntentState::Open)
        );

        // A crash here leaves the intent open, and it stays open across the restart.
        store.close().await;
        let store = backend.open().await;
        assert_eq!(
            intent_state(store.as_ref(), task).await,
            Some(IntentState::Open)
        );
        let tasks = |intents: Vec<ucan_gateway::store::Intent>| {
            let mut tasks: Vec<_> = intents.into_iter().map(|i| i.task).collect();
            tasks.sort();
            tasks
        };
        let mut expected = vec![task, cid("other task")];
        expected.sort();
        assert_eq!(tasks(store.interrupted(i64::MAX).await.unwrap()), expected);
        // Only runs whose time is up count as interrupted, earliest first.
        assert_eq!(
            tasks(store.interrupted(450).await.unwrap()),
            vec![cid("other task")]
        );
        assert_eq!(store.interrupted(400).await.unwrap(), Vec::new());

        let err = complete_intent(store.as_ref(), task, cid("unstored receipt"))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            StoreErrorKind::NotFound,
            "the receipt must be stored first"
        );
        assert_eq!(
            intent_state(store.as_ref(), task).await,
            Some(IntentState::Open)
        );

        let r = receipt("sent", cid("inv"), task, None, true, false, 100);
        store.put_receipt(&r).await.unwrap();
        complete_intent(store.as_ref(), task, r.receipt_cid)
            .await
            .unwrap();
        complete_intent(store.as_ref(), task, r.receipt_cid)
            .await
            .unwrap();
        let settled = Some(IntentState::Completed {
            receipt: r.receipt_cid,
        });
        assert_eq!(intent_state(store.as_ref(), task).await, settled);
        assert_eq!(
            tasks(store.interrupted(i64::MAX).await.unwrap()),
            vec![cid("other task")]
        );
        assert!(
            !open_intent(store.as_ref(), task, 500).await,
            "a completed task must not start again"
        );

        let other = receipt("other", cid("inv 2"), task, None, true, false, 101);
        store.put_receipt(&other).await.unwrap();
        let err = complete_intent(store.as_ref(), task, other.receipt_cid)
            .await
            .unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Conflict);
        assert_eq!(intent_state(store.as_ref(), task).await, settled);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_concurrent_open_intent_wins() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { open_intent(store.as_ref(), cid("once"), 10).await })
            })
            .collect();
        let mut wins = 0;
        for call in calls {
            wins += usize::from(call.await.unwrap());
        }
        assert_eq!(wins, 1, "{}", backend.name());
    }
}

#[tokio::test]
async fn an_existing_intent_is_reported_with_its_invocation_and_the_commit_writes_nothing() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let (task, first, second) = (cid("task"), cid("first"), cid("second"));
        let open = |invocation, key| {
            Commit::default()
                .with_claim(key, None)
                .with_intent(IntentChange::Open {
                    task,
                    invocation,
                    until: 77,
                })
        };
        assert_eq!(
            store.commit(open(first, cid("key 1"))).await.unwrap(),
            Outcome::Committed
        );
        match store.commit(open(second, cid("key 2"))).await.unwrap() {
            Outcome::IntentExists(intent) => {
                assert_eq!(
                    (intent.task, intent.invocation, intent.until, intent.state),
                    (task, first, 77, IntentState::Open)
                );
            }
            other => panic!("{}: {other:?}", backend.name()),
        }
        assert!(store.seen(cid("key 1")).await.unwrap());
        assert!(
            !store.seen(cid("key 2")).await.unwrap(),
            "the refused commit claimed nothing"
        );
    }
}
