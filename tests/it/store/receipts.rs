//! Receipts: found by each of their keys, the latest winning, never replaced; memoization; aliases.

use super::{cid, receipt};
use ucan_gateway::store::StoreErrorKind;

#[tokio::test]
async fn a_receipt_is_found_by_each_of_its_keys() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test]
async fn lookups_by_task_and_invocation_return_the_latest_receipt() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test]
async fn put_receipt_is_idempotent_and_never_replaces_a_stored_receipt() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test]
async fn memoized_returns_only_ok_receipts_of_pure_tasks_with_that_work_id() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test]
async fn aliases_find_receipts_and_never_move() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test]
async fn receipt_by_any_prefers_invocation_then_task_then_receipt_then_alias() {
    for backend in super::backends().await {
        let store = backend.open().await;
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
}

#[tokio::test]
async fn reopening_a_database_keeps_its_schema_and_data() {
    for backend in super::backends().await {
        let r = receipt(
            "a",
            cid("inv"),
            cid("task"),
            Some(cid("work")),
            true,
            true,
            100,
        );
        let store = backend.open().await;
        store.put_receipt(&r).await.unwrap();
        store.put_alias(cid("alias"), r.receipt_cid).await.unwrap();
        store.close().await;

        for _ in 0..2 {
            let store = backend.open().await;
            store.health().await.unwrap();
            assert_eq!(
                store.receipt_by_any(cid("alias")).await.unwrap(),
                Some(r.clone())
            );
            assert_eq!(store.memoized(cid("work")).await.unwrap(), Some(r.clone()));
            store.close().await;
        }
    }
}
