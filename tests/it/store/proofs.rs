//! Delegations kept by CID: written with a commit, capped per issuer, never returned once expired
//! or revoked, purged, kept across a restart.

use cid::Cid;
use ucan_gateway::store::{Commit, Outcome, StoredDelegation};

use super::cid;

/// A delegation row from `issuer` to `audience`, its bytes (and CID) unique to `tag`.
fn proof(tag: &str, issuer: &str, audience: &str, expires_at: Option<i64>) -> StoredDelegation {
    let bytes = format!("signed delegation {tag}").into_bytes();
    StoredDelegation {
        cid: ucan_gateway::ipld::cid_for(ucan_gateway::ipld::DAG_CBOR, &bytes),
        issuer: issuer.to_owned(),
        audience: audience.to_owned(),
        expires_at,
        bytes,
    }
}

fn cids(rows: &[StoredDelegation]) -> Vec<Cid> {
    let mut out: Vec<Cid> = rows.iter().map(|r| r.cid).collect();
    out.sort();
    out
}

#[tokio::test]
async fn proofs_are_kept_with_a_commit_and_survive_a_restart() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let a = proof("a", "did:key:alice", "did:key:bob", Some(1_000));
        let b = proof("b", "did:key:bob", "did:key:carol", None);
        let outcome = store
            .commit(
                Commit::default()
                    .with_claim(cid("k1"), None)
                    .with_proofs(vec![a.clone(), b.clone()], 10),
            )
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Committed, "{}", backend.name());
        // Asked for with one that is not kept: only the kept ones come back, as written.
        let mut found = store
            .proofs(&[a.cid, b.cid, cid("unknown")], 500)
            .await
            .unwrap();
        found.sort_by_key(|r| r.cid);
        let mut expected = vec![a.clone(), b.clone()];
        expected.sort_by_key(|r| r.cid);
        assert_eq!(found, expected, "{}", backend.name());
        store.close().await;

        let store = backend.open().await;
        assert_eq!(
            cids(&store.proofs(&[a.cid, b.cid], 500).await.unwrap()),
            cids(&expected)
        );
        assert_eq!(store.proofs_of("did:key:alice").await.unwrap(), 1);
        assert_eq!(store.proofs_of("did:key:nobody").await.unwrap(), 0);
        // Keeping one again is a no-op.
        store
            .commit(Commit::default().with_proofs(vec![a.clone()], 10))
            .await
            .unwrap();
        assert_eq!(store.proofs_of("did:key:alice").await.unwrap(), 1);
    }
}

#[tokio::test]
async fn a_replayed_commit_keeps_no_proofs() {
    for backend in super::backends().await {
        let store = backend.open().await;
        store.mark_seen(cid("k"), None).await.unwrap();
        let a = proof("a", "did:key:alice", "did:key:bob", None);
        let outcome = store
            .commit(
                Commit::default()
                    .with_claim(cid("k"), None)
                    .with_proofs(vec![a.clone()], 10),
            )
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Replayed);
        assert!(
            store.proofs(&[a.cid], 0).await.unwrap().is_empty(),
            "{}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn each_issuer_keeps_at_most_its_cap_and_the_rest_of_the_commit_is_written() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let alice: Vec<StoredDelegation> = (0..3)
            .map(|i| proof(&format!("alice{i}"), "did:key:alice", "did:key:bob", None))
            .collect();
        let bob = proof("bob", "did:key:bob", "did:key:carol", None);
        let mut all = alice.clone();
        all.push(bob.clone());
        let receipt = super::receipt("r", cid("ran"), cid("task"), None, true, false, 1);
        let outcome = store
            .commit(
                Commit::default()
                    .with_receipt(receipt.clone())
                    .with_proofs(all, 2),
            )
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Committed);
        assert_eq!(
            store.proofs_of("did:key:alice").await.unwrap(),
            2,
            "{}",
            backend.name()
        );
        assert_eq!(store.proofs_of("did:key:bob").await.unwrap(), 1);
        let kept = store
            .proofs(&alice.iter().map(|a| a.cid).collect::<Vec<_>>(), 0)
            .await
            .unwrap();
        assert_eq!(kept.len(), 2);
        // The receipt of the same commit is stored all the same.
        assert_eq!(
            store.receipt_by_cid(receipt.receipt_cid).await.unwrap(),
            Some(receipt)
        );
        // A cap of zero keeps nothing.
        let carol = proof("carol", "did:key:carol", "did:key:dan", None);
        store
            .commit(Commit::default().with_proofs(vec![carol.clone()], 0))
            .await
            .unwrap();
        assert_eq!(store.proofs_of("did:key:carol").await.unwrap(), 0);
    }
}

#[tokio::test]
async fn expired_and_revoked_proofs_are_never_returned_and_are_purged() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let expiring = proof("exp", "did:key:alice", "did:key:bob", Some(100));
        let revoked = proof("rev", "did:key:alice", "did:key:carol", None);
        let lasting = proof("last", "did:key:alice", "did:key:dan", None);
        let all = vec![expiring.clone(), revoked.clone(), lasting.clone()];
        store
            .commit(Commit::default().with_proofs(all.clone(), 10))
            .await
            .unwrap();
        let every: Vec<Cid> = all.iter().map(|p| p.cid).collect();
        assert_eq!(store.proofs(&every, 100).await.unwrap().len(), 3);
        assert!(store.delegated_to("did:key:bob", 100).await.unwrap());
        // Past its expiry a proof is not returned, nor counted as delegating to its audience.
        assert_eq!(
            cids(&store.proofs(&every, 101).await.unwrap()),
            cids(&[revoked.clone(), lasting.clone()])
        );
        assert!(!store.delegated_to("did:key:bob", 101).await.unwrap());
        // A revoked one is not returned from the moment the revocation is recorded.
        store
            .revoke(revoked.cid, cid("revocation"), 50)
            .await
            .unwrap();
        assert_eq!(
            cids(&store.proofs(&every, 0).await.unwrap()),
            cids(&[expiring.clone(), lasting.clone()])
        );
        assert!(!store.delegated_to("did:key:carol", 0).await.unwrap());
        assert!(store.delegated_to("did:key:dan", 0).await.unwrap());

        // Purging removes both, and frees their issuer's slots.
        assert_eq!(store.proofs_of("did:key:alice").await.unwrap(), 3);
        assert_eq!(
            store.purge_proofs(101).await.unwrap(),
            2,
            "{}",
            backend.name()
        );
        assert_eq!(store.proofs_of("did:key:alice").await.unwrap(), 1);
        assert_eq!(
            cids(&store.proofs(&every, 0).await.unwrap()),
            vec![lasting.cid]
        );
        assert_eq!(store.purge_proofs(101).await.unwrap(), 0);
        // The freed slots take new delegations: with a cap of 3, two more fit and a third does not.
        let more: Vec<StoredDelegation> = (0..3)
            .map(|i| proof(&format!("more{i}"), "did:key:alice", "did:key:erin", None))
            .collect();
        store
            .commit(Commit::default().with_proofs(more.clone(), 3))
            .await
            .unwrap();
        assert_eq!(store.proofs_of("did:key:alice").await.unwrap(), 3);
        let more_cids: Vec<Cid> = more.iter().map(|p| p.cid).collect();
        assert_eq!(
            store.proofs(&more_cids, 0).await.unwrap().len(),
            2,
            "{}",
            backend.name()
        );
    }
}

#[tokio::test]
async fn commits_racing_on_two_stores_for_an_issuers_last_slots_keep_no_more_than_its_cap() {
    for backend in super::backends().await {
        let stores = [backend.open().await, backend.open().await];
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = std::sync::Arc::clone(&stores[i % 2]);
            // Two delegations per commit, so the cap also holds within one.
            let rows = vec![
                proof(&format!("race{i}a"), "did:key:alice", "did:key:bob", None),
                proof(&format!("race{i}b"), "did:key:alice", "did:key:bob", None),
            ];
            tasks.push(tokio::spawn(async move {
                store.commit(Commit::default().with_proofs(rows, 3)).await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Outcome::Committed);
        }
        assert_eq!(
            stores[0].proofs_of("did:key:alice").await.unwrap(),
            3,
            "{}",
            backend.name()
        );
    }
}
