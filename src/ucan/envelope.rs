//! The UCAN envelope: `[signature, {"h": varsig header, "ucan/<kind>@<version>": payload}]` in DAG-CBOR.
//!
//! Decoding is strict: the bytes must be canonical DAG-CBOR (re-encoding gives the same bytes), every
//! integer must lie within ±(2^53−1), nesting is bounded by [`crate::ipld::MAX_DEPTH`], the tag must be
//! a known kind and version, and the varsig header must name a supported algorithm. The signature
//! covers the DAG-CBOR bytes of the second element.
//!
//! Because accepted bytes are canonical, the signed bytes are a suffix of the token bytes: we slice them
//! out instead of re-encoding, so verification costs one hash-and-verify and no allocation.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::{PublicKey, SigningKey};
use crate::ipld;
use crate::ucan::varsig;
use crate::ucan::{ErrorKind, ValidationError};

/// Tag we emit for delegations.
pub const DELEGATION_TAG: &str = "ucan/dlg@1.0.0";
/// Tag we emit for invocations (receipts are invocations of `/ucan/assert`).
pub const INVOCATION_TAG: &str = "ucan/inv@1.0.0";
/// Release-candidate tags still emitted by deployed libraries; accepted on input, never emitted.
pub const DELEGATION_TAG_RC1: &str = "ucan/dlg@1.0.0-rc.1";
/// See [`DELEGATION_TAG_RC1`].
pub const INVOCATION_TAG_RC1: &str = "ucan/inv@1.0.0-rc.1";

/// Key of the varsig header in the signed map.
const HEADER_KEY: &str = "h";

/// Which kind of token an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A delegation (`ucan/dlg`).
    Delegation,
    /// An invocation (`ucan/inv`).
    Invocation,
}

impl Kind {
    /// The tag this crate emits for the kind.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Delegation => DELEGATION_TAG,
            Kind::Invocation => INVOCATION_TAG,
        }
    }

    /// The kind a payload tag names, if it is one we accept.
    pub fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            DELEGATION_TAG | DELEGATION_TAG_RC1 => Some(Kind::Delegation),
            INVOCATION_TAG | INVOCATION_TAG_RC1 => Some(Kind::Invocation),
            _ => None,
        }
    }
}

/// Why bytes could not be read as an envelope, or a signature did not hold.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not DAG-CBOR, not canonical, wrong shape, unknown tag, out-of-range integer, and so on.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Lists and maps nest deeper than `max` levels (the token as a whole: [`ipld::MAX_DEPTH`]).
    #[error("the token nests lists and maps more than {max} levels deep; at most {max}")]
    TooDeep {
        /// The deepest nesting accepted.
        max: usize,
    },
    /// The varsig header is unknown or does not match the issuer's key type.
    #[error("{0}")]
    Header(#[from] varsig::HeaderError),
    /// The signature does not verify against the issuer's key.
    #[error("invalid signature")]
    InvalidSignature,
}

fn malformed(reason: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Malformed(reason.into())
}

impl From<ipld::DecodeError> for EnvelopeError {
    fn from(e: ipld::DecodeError) -> Self {
        match e {
            ipld::DecodeError::TooDeep { max } => EnvelopeError::TooDeep { max },
            other => malformed(other),
        }
    }
}

impl From<EnvelopeError> for ValidationError {
    /// A token that cannot be read is `MalformedToken`, except where a limit refused it.
    fn from(e: EnvelopeError) -> Self {
        let kind = match e {
            EnvelopeError::TooDeep { .. } => ErrorKind::NestingTooDeep,
            EnvelopeError::InvalidSignature => ErrorKind::InvalidSignature,
            _ => ErrorKind::MalformedToken,
        };
        ValidationError::new(kind, e.to_string())
    }
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
    /// The exact token bytes. [`Envelope::signed_bytes`] is sliced from these.
    pub bytes: Vec<u8>,
    /// CIDv1, dag-cbor, sha2-256 of [`Envelope::bytes`].
    pub cid: Cid,
}

impl Envelope {
    /// Decodes and strictly checks token bytes (see the module docs). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let value = ipld::from_dag_cbor_strict(bytes)?;
        let Ipld::List(items) = value else {
            return Err(malformed("envelope is not an array"));
        };
        let [signature, signed]: [Ipld; 2] = items
            .try_into()
            .map_err(|_| malformed("envelope must have exactly two elements"))?;
        let Ipld::Bytes(signature) = signature else {
            return Err(malformed("signature is not bytes"));
        };
        let Ipld::Map(mut signed) = signed else {
            return Err(malformed("signed part is not a map"));
        };
        if signed.len() != 2 {
            return Err(malformed(
                "signed part must hold exactly a header and a payload",
            ));
        }
        let Some(Ipld::Bytes(header)) = signed.remove(HEADER_KEY) else {
            return Err(malformed("missing or non-bytes varsig header"));
        };
        let Some((tag, payload)) = signed.pop_first() else {
            return Err(malformed("missing payload"));
        };
        let kind = Kind::from_tag(&tag).ok_or_else(|| {
            // The tag is attacker-sized; quote only its start.
            let shown: String = tag.chars().take(64).collect();
            malformed(format!("unknown payload tag {shown:?}"))
        })?;
        if !matches!(payload, Ipld::Map(_)) {
            return Err(malformed("payload is not a map"));
        }
        let header = varsig::Header::from_bytes(&header)?;
        Ok(Envelope {
            kind,
            tag,
            header,
            signature,
            payload,
            bytes: bytes.to_vec(),
            cid: ipld::dag_cbor_cid(bytes),
        })
    }

    /// Signs `payload` (which must be a map) as a token of `kind` with the current tag.
    pub fn sign(kind: Kind, payload: Ipld, key: &SigningKey) -> Result<Self, EnvelopeError> {
        if !matches!(payload, Ipld::Map(_)) {
            return Err(malformed("payload is not a map"));
        }
        // The payload sits at level 3 of the token ([sig, {tag: payload}]). Refusing here what
        // decode would refuse means we never emit a token no one can read back.
        ipld::check_limits(&payload, ipld::MAX_DEPTH - 2)?;
        let header = varsig::Header::for_alg(key.alg());
        let tag = kind.tag();
        let mut signed = BTreeMap::new();
        signed.insert(HEADER_KEY.to_owned(), Ipld::Bytes(header.to_bytes()));
        signed.insert(tag.to_owned(), payload);
        // Encoding the map itself (not an `Ipld::Map` around it) gives the same bytes and lets us
        // take the payload back out afterwards without cloning it.
        let signed_bytes =
            serde_ipld_dagcbor::to_vec(&signed).map_err(|e| malformed(e.to_string()))?;
        let signature = key.sign(&signed_bytes);

        // [signature, signed]: the canonical encoding of the pair is the array head, the signature
        // as a byte string, then the signed map's bytes unchanged, so build it without re-encoding.
        let mut bytes = Vec::with_capacity(signed_bytes.len() + signature.len() + 10);
        bytes.push(0x82);
        push_cbor_head(&mut bytes, 2, signature.len() as u64);
        bytes.extend_from_slice(&signature);
        bytes.extend_from_slice(&signed_bytes);

        let payload = signed
            .remove(tag)
            .ok_or_else(|| malformed("payload lost while signing"))?;
        Ok(Envelope {
            kind,
            tag: tag.to_owned(),
            header,
            signature,
            payload,
            cid: ipld::dag_cbor_cid(&bytes),
            bytes,
        })
    }

    /// Checks the signature against `issuer`, and that the header's algorithm is the key's.
    pub fn verify(&self, issuer: &PublicKey) -> Result<(), EnvelopeError> {
        if self.header.alg != issuer.alg() {
            return Err(varsig::HeaderError(format!(
                "header names {:?} but the issuer key is {:?}",
                self.header.alg,
                issuer.alg()
            ))
            .into());
        }
        issuer
            .verify(self.signed_bytes(), &self.signature)
            .map_err(|_| EnvelopeError::InvalidSignature)
    }

    /// The bytes the signature covers: DAG-CBOR of `{"h": …, "<tag>": payload}`.
    ///
    /// Sliced from [`Envelope::bytes`]; if those are not a well-formed envelope (only possible for a
    /// hand-built value) the slice is empty and no signature verifies.
    pub fn signed_bytes(&self) -> &[u8] {
        signed_offset(&self.bytes)
            .and_then(|at| self.bytes.get(at..))
            .unwrap_or_default()
    }
}

/// Where the second element starts in canonical envelope bytes: after the two-element array head
/// and the signature byte string.
fn signed_offset(bytes: &[u8]) -> Option<usize> {
    let (&array_head, rest) = bytes.split_first()?;
    if array_head != 0x82 {
        return None;
    }
    let (&head, rest) = rest.split_first()?;
    if head >> 5 != 2 {
        return None;
    }
    let (len, arg_len) = match head & 0x1f {
        n @ 0..=23 => (u64::from(n), 0),
        24 => (u64::from(*rest.first()?), 1),
        25 => (
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            2,
        ),
        26 => (
            u64::from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)),
            4,
        ),
        27 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 8),
        _ => return None,
    };
    let offset = 2usize
        .checked_add(arg_len)?
        .checked_add(usize::try_from(len).ok()?)?;
    (offset <= bytes.len()).then_some(offset)
}

/// Appends a minimal CBOR head of `major` type with argument `n`.
fn push_cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let major = major << 5;
    if n < 24 {
        out.push(major | n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[major | 24, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(major | 25);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(major | 26);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}
