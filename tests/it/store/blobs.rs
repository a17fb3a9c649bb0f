//! Content-addressed blobs: idempotent, never overwritten, kept across a restart.

use ucan_gateway::ipld::{RAW, cid_for};
use ucan_gateway::store::StoreErrorKind;

#[tokio::test]
async fn blobs_are_idempotent_and_never_overwritten() {
    for backend in super::backends().await {
        let store = backend.open().await;
        let module = b"\0asm\x01\0\0\0".to_vec();
        let id = cid_for(RAW, &module);
        assert!(!store.has_blob(id).await.unwrap());
        assert_eq!(store.get_blob(id).await.unwrap(), None);

        assert!(store.put_blob(id, &module).await.unwrap());
        assert!(!store.put_blob(id, &module).await.unwrap());
        assert!(store.has_blob(id).await.unwrap());
        assert_eq!(store.get_blob(id).await.unwrap(), Some(module.clone()));

        let err = store.put_blob(id, b"something else").await.unwrap_err();
        assert_eq!(err.kind, StoreErrorKind::Conflict);
        assert_eq!(store.get_blob(id).await.unwrap(), Some(module.clone()));

        let empty = cid_for(RAW, b"");
        assert!(store.put_blob(empty, b"").await.unwrap());
        assert_eq!(store.get_blob(empty).await.unwrap(), Some(Vec::new()));

        store.close().await;
        let store = backend.open().await;
        assert_eq!(store.get_blob(id).await.unwrap(), Some(module));
    }
}
