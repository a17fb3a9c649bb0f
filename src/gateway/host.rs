//! What the gateway lends its executors ([`crate::exec::Host`]): blobs and the journal of submitted
//! jobs, both kept in the store. The executors see only the small traits; this is where they meet the
//! store, so no executor imports it.

use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;

use crate::exec::journal::JobRecord;
use crate::exec::wasm::WasmEngine;
use crate::exec::{Blobs, Host, HostError, Journal};
use crate::store::{Commit, JobEntry, Store, StoreError};
use crate::ucan::validate::unix_now;

use super::quota::JobNote;

/// The host executors run in: blobs and the job journal in `store`, the process's Wasm `engine`,
/// and the gateway's DID.
pub fn host(store: &Arc<dyn Store>, engine: Arc<WasmEngine>, gateway_did: &str) -> Host {
    let kept = Arc::new(Kept(Arc::clone(store)));
    Host {
        blobs: Arc::clone(&kept) as Arc<dyn Blobs>,
        journal: kept,
        engine,
        gateway_did: gateway_did.to_owned(),
    }
}

/// Blobs and jobs kept in the store.
struct Kept(Arc<dyn Store>);

/// The failure, as safe to show in a receipt: its kind, not the database's words.
fn host_error(e: StoreError) -> HostError {
    HostError(e.kind.describe().to_owned())
}

#[async_trait]
impl Blobs for Kept {
    async fn get(&self, cid: Cid) -> Result<Option<Vec<u8>>, HostError> {
        self.0.get_blob(cid).await.map_err(host_error)
    }

    async fn put(&self, cid: Cid, bytes: &[u8]) -> Result<(), HostError> {
        self.0
            .put_blob(cid, bytes)
            .await
            .map(drop)
            .map_err(host_error)
    }
}

#[async_trait]
impl Journal for Kept {
    async fn submitted(
        &self,
        backend: &str,
        job: &str,
        record: &JobRecord,
    ) -> Result<(), HostError> {
        // Keyed by the invocation: the request that submitted it removes it once answered. The
        // job counts against the quotas its record notes, in the commit that records it.
        let entry = JobEntry {
            key: record.ran,
            backend: backend.to_owned(),
            job_id: job.to_owned(),
            payload: record.encode(),
        };
        let quotas = record
            .note
            .as_ref()
            .and_then(JobNote::read)
            .map_or_else(Vec::new, |note| note.submission_charges(unix_now()));
        let commit = Commit {
            quotas,
            ..Commit::default().with_job(entry)
        };
        self.0.commit(commit).await.map(drop).map_err(host_error)
    }
}
