//! Announcements of commits, from every process sharing the database: a dedicated connection
//! `LISTEN`s on the store's channel and counts what arrives into a [`Changes`] that callers watch.
//!
//! Notifications sent while that connection was down are lost, so after reconnecting it counts one
//! of everything: whoever watches looks again rather than miss a change.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use crate::store::{Changes, Result, StoreError, StoreErrorKind};

/// The payload a commit storing a receipt (or an alias) sends.
pub(super) const RECEIPT: &str = "receipt";
/// The payload a commit recording a revocation sends.
pub(super) const REVOCATION: &str = "revocation";

/// The pause before listening again after the connection failed to reconnect.
const RETRY: Duration = Duration::from_secs(1);

/// Starts listening on `channel`; the watch changes with each announcement until the pool closes
/// or every receiver is dropped.
pub(super) async fn listen(pool: &PgPool, channel: String) -> Result<watch::Receiver<Changes>> {
    let open = |e: sqlx::Error| StoreError::with_source(StoreErrorKind::Open, "open", e);
    let mut listener = PgListener::connect_with(pool).await.map_err(open)?;
    listener.listen(&channel).await.map_err(open)?;
    let (tx, rx) = watch::channel(Changes::default());
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                // Every store handle is gone: stop listening, which lets the pool go too.
                () = tx.closed() => break,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(note)) => tx.send_modify(|c| match note.payload() {
                    RECEIPT => c.receipts += 1,
                    REVOCATION => c.revocations += 1,
                    _ => c.missed(),
                }),
                // The connection dropped and is reconnected: anything may have been missed.
                Ok(None) => tx.send_modify(Changes::missed),
                Err(sqlx::Error::PoolClosed) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "listening for store announcements failed; retrying");
                    tx.send_modify(Changes::missed);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
    Ok(rx)
}
