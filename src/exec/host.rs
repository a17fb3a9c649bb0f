//! What the gateway lends its executors, as small traits, so that no executor knows the store or the
//! gateway: content-addressed blobs (modules and inputs stored with `/blob/put`), a journal where a
//! job handed to an external backend is written down the moment it is accepted, the process's Wasm
//! engine, and the DID the gateway signs with (the issuer of effects an executor asks for).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;

use super::journal::JobRecord;
use super::wasm::WasmEngine;

/// A failure of the host's own storage, described without its internals (safe for receipts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostError(pub String);

/// Content-addressed bytes by raw CID.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// The blob stored under `cid`, if any.
    async fn get(&self, cid: Cid) -> Result<Option<Vec<u8>>, HostError>;
    /// Stores `bytes` under `cid` (the caller has checked that they match).
    async fn put(&self, cid: Cid, bytes: &[u8]) -> Result<(), HostError>;
}

/// Where jobs handed to an external backend are written down before anything else can go wrong, so
/// the gateway finishes them even if the request that started them never does.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Records that `backend` accepted job `job` for the task in `record`.
    async fn submitted(
        &self,
        backend: &str,
        job: &str,
        record: &JobRecord,
    ) -> Result<(), HostError>;
}

/// Everything an executor may use of the process it runs in.
#[derive(Clone)]
pub struct Host {
    /// Stored blobs.
    pub blobs: Arc<dyn Blobs>,
    /// The journal of submitted jobs.
    pub journal: Arc<dyn Journal>,
    /// The process-wide Wasm engine.
    pub engine: Arc<WasmEngine>,
    /// The gateway's DID: the subject and issuer of the bookkeeping effects executors ask for.
    pub gateway_did: String,
}

impl fmt::Debug for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("gateway_did", &self.gateway_did)
            .finish_non_exhaustive()
    }
}
