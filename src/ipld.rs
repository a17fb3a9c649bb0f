//! Small helpers over IPLD values: CIDs of DAG-CBOR blocks and raw blobs, and DAG-JSON text.

use cid::Cid;
use cid::multihash::Multihash;
use ipld_core::ipld::Ipld;
use sha2::{Digest, Sha256};

/// Multicodec for DAG-CBOR.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec for raw bytes.
pub const RAW: u64 = 0x55;
const SHA2_256: u64 = 0x12;

/// CIDv1 with sha2-256 of `bytes` under `codec`.
pub fn cid_for(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    let mh = Multihash::<64>::wrap(SHA2_256, &digest).expect("a 32-byte digest fits in 64 bytes");
    Cid::new_v1(codec, mh)
}

/// CIDv1 (dag-cbor, sha2-256) of DAG-CBOR bytes.
pub fn dag_cbor_cid(bytes: &[u8]) -> Cid {
    cid_for(DAG_CBOR, bytes)
}

/// Encodes an IPLD value as DAG-CBOR.
pub fn to_dag_cbor(value: &Ipld) -> Result<Vec<u8>, String> {
    serde_ipld_dagcbor::to_vec(value).map_err(|e| e.to_string())
}

/// Encodes an IPLD value as DAG-JSON text.
pub fn to_dag_json(value: &Ipld) -> Result<String, String> {
    let bytes = serde_ipld_dagjson::to_vec(value).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

/// Parses DAG-JSON text into an IPLD value.
pub fn from_dag_json(text: &str) -> Result<Ipld, String> {
    serde_ipld_dagjson::from_slice(text.as_bytes()).map_err(|e| e.to_string())
}
