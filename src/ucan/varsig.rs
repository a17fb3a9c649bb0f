//! Varsig v1 headers (the `h` field of an envelope): which algorithm signed the payload and how the
//! payload was encoded. Only DAG-CBOR payloads and the three `did:key` algorithms are accepted.

use crate::did::KeyAlg;

/// A decoded varsig header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The signature algorithm the header names.
    pub alg: KeyAlg,
}

/// Why a varsig header was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unsupported or malformed varsig header: {0}")]
pub struct HeaderError(pub String);

impl Header {
    /// The header for signatures made with `alg` over DAG-CBOR payloads.
    pub fn for_alg(alg: KeyAlg) -> Self {
        Header { alg }
    }

    /// The canonical header bytes for this algorithm.
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }

    /// Parses header bytes; anything but a known algorithm with a DAG-CBOR payload encoding is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeaderError> {
        todo!("{bytes:?}")
    }
}
