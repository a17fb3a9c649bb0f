//! Announcements of commits, from every process sharing the database: a dedicated connection
//! `LISTEN`s on the store's channel and counts what arrives into a [`Changes`] that callers watch.
//!
//! Notifications sent while that connection was down are lost, so after reconnecting it counts one
//! of everything: whoever watches looks again rather than miss a change.
//!
//! Revocations are announced inside their own transaction (rare, and then never later than the
//! commit). Receipts are many: each commit storing one tells the [`Announcer`], which sends one
//! announcement for all the receipts committed since its last, just after they are committed. A
//! process dying in between leaves waiters elsewhere to their next look (`--store-refresh`).

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{mpsc, watch};

use crate::store::{Changes, Result, StoreError, StoreErrorKind};

/// The payload a commit storing a receipt (or an alias) sends.
pub(super) const RECEIPT: &str = "receipt";
/// The payload a commit recording a revocation sends.
pub(super) const REVOCATION: &str = "revocation";

/// The pause before listening again after the connection failed to reconnect.
const RETRY: Duration = Duration::from_secs(1);
/// How long the announcer gathers receipt commits into one announcement.
const GATHER: Duration = Duration::from_millis(2);

/// Announces committed receipts on the store's channel, many commits to one `NOTIFY`.
pub(super) struct Announcer {
    due: mpsc::Sender<()>,
}

impl Announcer {
    /// Starts announcing on `channel`; stops when the announcer is dropped.
    pub(super) fn start(pool: PgPool, channel: String) -> Self {
        let (due, mut wake) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while wake.recv().await.is_some() {
                tokio::time::sleep(GATHER).await;
                // Receipts committed while gathering are covered by this announcement.
                while wake.try_recv().is_ok() {}
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(&channel)
                    .bind(RECEIPT)
                    .execute(&pool)
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "announcing stored receipts failed");
                }
            }
        });
        Announcer { due }
    }

    /// A receipt was committed: announce it soon.
    pub(super) fn receipt_stored(&self) {
        // A full queue means an announcement is already due, which will cover this one.
        let _ = self.due.try_send(());
    }
}

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
