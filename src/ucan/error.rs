//! The one error type of proof-chain validation. Kinds are named after the UCAN specs, so they can be
//! sent to clients as they are (`{"error":{"name":"Expired",…}}`). Limits of this implementation,
//! which the specs leave open, get names of their own (`ChainTooLong`, …): a caller must be able to
//! tell a request that is too big from one that is wrong.

use std::fmt;

use cid::Cid;

/// What went wrong, named as the specs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A signature does not verify, or its varsig header does not match the issuer's key.
    InvalidSignature,
    /// A token's `exp` has passed.
    Expired,
    /// A token's `nbf` is still in the future.
    TooEarly,
    /// Principal misalignment: a delegation's `aud` is not the next token's `iss`.
    InvalidAudience,
    /// Subject misalignment, a powerline at the root, or a root not issued by its subject.
    InvalidSubject,
    /// A command is not covered by the delegated command (escalation).
    InvalidClaim,
    /// A proof named in `prf` is not among the supplied tokens.
    UnavailableProof,
    /// The invocation's `args` fail a policy in the chain.
    MatchError,
    /// The token bytes or fields are not a well-formed UCAN (no spec name covers this).
    MalformedToken,
    /// A delegation in the chain has been revoked.
    Revoked,
    /// More proofs than [`MAX_CHAIN`](crate::ucan::validate::MAX_CHAIN).
    ChainTooLong,
    /// A token's DAG-CBOR nests lists and maps deeper than [`MAX_DEPTH`](crate::ipld::MAX_DEPTH).
    NestingTooDeep,
    /// A policy nests statements deeper than [`MAX_DEPTH`](crate::ucan::policy::MAX_DEPTH), or a
    /// literal deeper than [`MAX_LITERAL_DEPTH`](crate::ucan::policy::MAX_LITERAL_DEPTH).
    PolicyTooDeep,
    /// A policy selector is longer than [`MAX_SELECTOR_LEN`](crate::ucan::policy::MAX_SELECTOR_LEN).
    SelectorTooLong,
    /// Checking the arguments against a policy took more than
    /// [`MAX_STEPS`](crate::ucan::policy::MAX_STEPS) evaluation steps.
    PolicyTooComplex,
}

impl ErrorKind {
    /// The name as it appears on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::InvalidSignature => "InvalidSignature",
            ErrorKind::Expired => "Expired",
            ErrorKind::TooEarly => "TooEarly",
            ErrorKind::InvalidAudience => "InvalidAudience",
            ErrorKind::InvalidSubject => "InvalidSubject",
            ErrorKind::InvalidClaim => "InvalidClaim",
            ErrorKind::UnavailableProof => "UnavailableProof",
            ErrorKind::MatchError => "MatchError",
            ErrorKind::MalformedToken => "MalformedToken",
            ErrorKind::Revoked => "Revoked",
            ErrorKind::ChainTooLong => "ChainTooLong",
            ErrorKind::NestingTooDeep => "NestingTooDeep",
            ErrorKind::PolicyTooDeep => "PolicyTooDeep",
            ErrorKind::SelectorTooLong => "SelectorTooLong",
            ErrorKind::PolicyTooComplex => "PolicyTooComplex",
        }
    }

    /// Whether the kind is one of this implementation's limits rather than a fault the specs name:
    /// the tokens may be sound, only larger or deeper than the gateway accepts.
    pub fn is_limit(self) -> bool {
        matches!(
            self,
            ErrorKind::ChainTooLong
                | ErrorKind::NestingTooDeep
                | ErrorKind::PolicyTooDeep
                | ErrorKind::SelectorTooLong
                | ErrorKind::PolicyTooComplex
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed check: its kind, a message for humans, and the proof it concerns (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The spec name of the failure.
    pub kind: ErrorKind,
    /// A human-readable explanation.
    pub message: String,
    /// The delegation at fault, when the fault is in a proof rather than the invocation. Boxed: a CID
    /// is large, and errors travel through every `Result` on the hot path.
    proof: Option<Box<Cid>>,
}

impl ValidationError {
    /// An error about the invocation itself.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ValidationError {
            kind,
            message: message.into(),
            proof: None,
        }
    }

    /// An error about the proof with CID `proof`.
    pub fn in_proof(kind: ErrorKind, proof: Cid, message: impl Into<String>) -> Self {
        ValidationError {
            kind,
            message: message.into(),
            proof: Some(Box::new(proof)),
        }
    }

    /// The CID of the delegation at fault, when the fault is in a proof rather than the invocation.
    pub fn proof(&self) -> Option<Cid> {
        self.proof.as_deref().copied()
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.proof {
            Some(cid) => write!(f, "{}: {} (proof {cid})", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

impl std::error::Error for ValidationError {}
