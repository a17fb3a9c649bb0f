//! Revocations: recorded once, kept across a restart, listed by position.

use cid::Cid;

use super::cid;

#[tokio::test]
async fn revocations_are_recorded_once_and_survive_a_restart() {
    for backend in super::backends().await {
        let store = backend.open().await;
        assert!(!store.is_revoked(cid("d1")).await.unwrap());
        assert_eq!(store.revocations_since(0).await.unwrap(), Vec::new());

        assert!(store.revoke(cid("d1"), cid("rev1"), 100).await.unwrap());
        assert!(!store.revoke(cid("d1"), cid("rev2"), 200).await.unwrap());
        assert!(store.revoke(cid("d2"), cid("rev3"), 300).await.unwrap());
        assert!(store.is_revoked(cid("d1")).await.unwrap());
        assert!(!store.is_revoked(cid("rev1")).await.unwrap());
        store.close().await;

        let store = backend.open().await;
        assert!(store.is_revoked(cid("d1")).await.unwrap());
        assert!(store.is_revoked(cid("d2")).await.unwrap());
        // In the order recorded, each with a position after the one before.
        let all = store.revocations_since(0).await.unwrap();
        let revoked: Vec<Cid> = all.iter().map(|(_, cid)| *cid).collect();
        assert_eq!(revoked, vec![cid("d1"), cid("d2")]);
        assert!(all[0].0 < all[1].0);
        // Asking from a position gives only what came after it.
        assert_eq!(
            store.revocations_since(all[0].0).await.unwrap(),
            vec![all[1]]
        );
        assert_eq!(store.revocations_since(all[1].0).await.unwrap(), Vec::new());
        store.revoke(cid("d3"), cid("rev4"), 400).await.unwrap();
        let later = store.revocations_since(all[1].0).await.unwrap();
        assert_eq!(
            later.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            vec![cid("d3")]
        );
    }
}
