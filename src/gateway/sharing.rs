//! Several gateway processes (replicas) sharing one store behave as one gateway: a revocation one
//! accepts is honoured by all, a receipt one stores wakes the requests waiting for it on all, and
//! each pending job is watched by one at a time.
//!
//! Revocations are followed here ([`Gateway::follow_store`]): on every announcement of a revocation
//! from the store ([`crate::store::Store::changes`]), and every [`Sharing::refresh`] in case one was
//! missed, the revocations recorded since the last one seen are read and honoured. Receipts are
//! followed by the ledger's waits, jobs by the watcher's leases (`jobs.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::Gateway;

/// How often, by default, revocations and awaited receipts are looked up again in case an
/// announcement from another process sharing the store was missed.
pub const DEFAULT_STORE_REFRESH: Duration = Duration::from_secs(5);
/// How long, by default, a process holds the pending jobs it watches.
pub const DEFAULT_JOB_LEASE: Duration = Duration::from_secs(30);

/// How a gateway keeps up with other processes sharing its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharing {
    /// How often revocations are read again, and how long a wait for a receipt goes without looking
    /// again, when the store announces other processes' commits (otherwise waits look every 250 ms).
    pub refresh: Duration,
    /// How long this process holds the pending jobs it watches; if it dies, another takes them
    /// over once the lease ends.
    pub job_lease: Duration,
}

impl Default for Sharing {
    fn default() -> Self {
        Sharing {
            refresh: DEFAULT_STORE_REFRESH,
            job_lease: DEFAULT_JOB_LEASE,
        }
    }
}

impl Gateway {
    /// Starts following revocations other processes sharing the store record; runs until the
    /// returned handle is aborted.
    pub fn follow_store(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut changes = self.ledger.store().changes();
            let refresh = self.sharing.refresh.max(Duration::from_millis(10));
            loop {
                let seen = changes.as_mut().map(|c| c.borrow_and_update().revocations);
                self.learn_revocations().await;
                let announced = async {
                    match changes.as_mut() {
                        Some(rx) => loop {
                            if rx.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                            if Some(rx.borrow_and_update().revocations) != seen {
                                break;
                            }
                        },
                        None => std::future::pending().await,
                    }
                };
                let _ = tokio::time::timeout(refresh, announced).await;
            }
        })
    }

    /// Reads and honours the revocations recorded since the last one this process knows.
    async fn learn_revocations(&self) {
        let after = self.authority.position();
        match self.ledger.store().revocations_since(after).await {
            Ok(new) if !new.is_empty() => {
                tracing::debug!(count = new.len(), "revocations learnt from the store");
                self.authority.learn(new);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading revocations failed; will retry"),
        }
    }
}
