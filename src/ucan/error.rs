//! The one error type of proof-chain validation. Kinds are named after the UCAN specs, so they can be
//! sent to clients as they are (`{"error":{"name":"Expired",…}}`).

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
        }
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
