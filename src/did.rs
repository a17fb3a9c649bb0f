//! Principals: `did:key` identifiers for Ed25519, P-256 and secp256k1, the signing keys behind them,
//! and the key file format (base64 with padding of the multicodec-prefixed raw private key, as in the
//! official UCAN fixtures).
//!
//! Malformed input of any kind is an error, never a panic.

use std::fmt;

/// A signature algorithm (and curve) this crate can sign and verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlg {
    /// EdDSA over Curve25519 (verified with `verify_strict`).
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256 (ES256).
    P256,
    /// ECDSA over secp256k1 with SHA-256 (ES256K).
    Secp256k1,
}

/// Why a DID, key or signature was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DidError {
    /// The DID is not a well-formed `did:key` for a supported key type.
    #[error("malformed DID {did:?}: {reason}")]
    MalformedDid { did: String, reason: String },
    /// The key file or raw key bytes are not valid for any supported algorithm.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// The signature does not verify against the public key.
    #[error("signature does not verify")]
    InvalidSignature,
}

/// A public key, as named by a `did:key`.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
    Secp256k1(k256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Parses a `did:key:z…` (base58btc multibase of the multicodec-prefixed public key; the two ECDSA
    /// curves use compressed points). A DID URL fragment (`#…`) is ignored.
    pub fn from_did(did: &str) -> Result<Self, DidError> {
        todo!("{did}")
    }

    /// The `did:key` string for this key.
    pub fn did(&self) -> String {
        todo!()
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        todo!()
    }

    /// Verifies `sig` over `msg`. Ed25519 uses `verify_strict`; ECDSA signatures are the 64-byte
    /// `r || s` form and must be low-S normalised.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), DidError> {
        todo!("{msg:?}{sig:?}")
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.did())
    }
}

/// A private signing key.
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
    Secp256k1(k256::ecdsa::SigningKey),
}

impl SigningKey {
    /// A fresh random key from the operating system's RNG.
    pub fn generate(alg: KeyAlg) -> Self {
        todo!("{alg:?}")
    }

    /// Reads the key file format: base64 (standard alphabet, with padding) of
    /// varint(0x1300 Ed25519 | 0x1306 P-256 | 0x1301 secp256k1) followed by the raw private key.
    /// Surrounding whitespace is ignored.
    pub fn from_key_file(text: &str) -> Result<Self, DidError> {
        todo!("{text}")
    }

    /// Writes the key file format (no trailing newline).
    pub fn to_key_file(&self) -> String {
        todo!()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        todo!()
    }

    /// The `did:key` of the public half.
    pub fn did(&self) -> String {
        self.public().did()
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        todo!()
    }

    /// Signs `msg`. ECDSA signs SHA-256 of `msg`, returns 64-byte `r || s`, low-S.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        todo!("{msg:?}")
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material.
        write!(f, "SigningKey({})", self.did())
    }
}
