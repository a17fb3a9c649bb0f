//! The UCAN envelope: `[signature, {"h": varsig header, "ucan/<kind>@<version>": payload}]` in DAG-CBOR.
//!
//! Decoding is strict: the bytes must be canonical DAG-CBOR (re-encoding gives the same bytes), every
//! integer must lie within ±(2^53−1), the tag must be a known kind and version, and the varsig header must
//! name a supported algorithm. The signature covers the DAG-CBOR bytes of the second element.

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::{PublicKey, SigningKey};
use crate::ucan::varsig;

/// Tag we emit for delegations.
pub const DELEGATION_TAG: &str = "ucan/dlg@1.0.0";
/// Tag we emit for invocations (receipts are invocations of `/ucan/assert`).
pub const INVOCATION_TAG: &str = "ucan/inv@1.0.0";
/// Release-candidate tags still emitted by deployed libraries; accepted on input, never emitted.
pub const DELEGATION_TAG_RC1: &str = "ucan/dlg@1.0.0-rc.1";
/// See [`DELEGATION_TAG_RC1`].
pub const INVOCATION_TAG_RC1: &str = "ucan/inv@1.0.0-rc.1";

/// Which kind of token an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Delegation,
    Invocation,
}

/// Why bytes could not be read as an envelope, or a signature did not hold.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not DAG-CBOR, not canonical, wrong shape, unknown tag, out-of-range integer, and so on.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The varsig header is unknown or does not match the issuer's key type.
    #[error("{0}")]
    Header(#[from] varsig::HeaderError),
    /// The signature does not verify against the issuer's key.
    #[error("invalid signature")]
    InvalidSignature,
}

/// A decoded, not yet verified, envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The token kind named by the payload tag.
    pub kind: Kind,
    /// The payload tag exactly as it appeared (e.g. `ucan/dlg@1.0.0-rc.1`).
    pub tag: String,
    /// The varsig header.
    pub header: varsig::Header,
    /// Raw signature bytes.
    pub signature: Vec<u8>,
    /// The payload map.
    pub payload: Ipld,
    /// The exact token bytes.
    pub bytes: Vec<u8>,
    /// CIDv1, dag-cbor, sha2-256 of [`Envelope::bytes`].
    pub cid: Cid,
}

impl Envelope {
    /// Decodes and strictly checks token bytes (see the module docs). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        todo!("{bytes:?}")
    }

    /// Signs `payload` (which must be a map) as a token of `kind` with the current tag.
    pub fn sign(kind: Kind, payload: Ipld, key: &SigningKey) -> Result<Self, EnvelopeError> {
        todo!("{kind:?}{payload:?}{key:?}")
    }

    /// Checks the signature against `issuer`, and that the header's algorithm is the key's.
    pub fn verify(&self, issuer: &PublicKey) -> Result<(), EnvelopeError> {
        todo!("{issuer:?}")
    }

    /// The bytes the signature covers: DAG-CBOR of `{"h": …, "<tag>": payload}`.
    pub fn signed_bytes(&self) -> &[u8] {
        todo!()
    }
}
