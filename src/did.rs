//! Principals: `did:key` identifiers for Ed25519, P-256 and secp256k1, the signing keys behind them,
//! and the key file format (base64 with padding of the multicodec-prefixed raw private key, as in the
//! official UCAN fixtures).
//!
//! Malformed input of any kind is an error, never a panic. Parsing is also canonical: a DID is accepted
//! only if formatting the key it names gives back the same string, so one key has exactly one DID and
//! principals can be compared as strings.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use rand_core::OsRng;

/// Multicodec of an Ed25519 public key.
const ED25519_PUB: u64 = 0xed;
/// Multicodec of a P-256 public key (compressed SEC1 point).
const P256_PUB: u64 = 0x1200;
/// Multicodec of a secp256k1 public key (compressed SEC1 point).
const SECP256K1_PUB: u64 = 0xe7;
/// Multicodec of an Ed25519 private key (key files).
const ED25519_PRIV: u64 = 0x1300;
/// Multicodec of a P-256 private key (key files).
const P256_PRIV: u64 = 0x1306;
/// Multicodec of a secp256k1 private key (key files).
const SECP256K1_PRIV: u64 = 0x1301;

const DID_KEY_PREFIX: &str = "did:key:";
/// Longest base58btc method-specific id we can accept: a 2-byte codec plus a 33-byte point is 35 bytes,
/// at most 48 base58 characters, plus the multibase prefix. Checked before decoding because base58
/// decoding is quadratic in the input length and DIDs arrive from the network.
const MAX_MSI_LEN: usize = 64;

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
    /// An Ed25519 key (multicodec 0xed).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A P-256 key (multicodec 0x1200).
    P256(p256::ecdsa::VerifyingKey),
    /// A secp256k1 key (multicodec 0xe7).
    Secp256k1(k256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Parses a `did:key:z…` (base58btc multibase of the multicodec-prefixed public key; the two ECDSA
    /// curves use compressed points). A DID URL fragment (`#…`) is ignored.
    pub fn from_did(did: &str) -> Result<Self, DidError> {
        let malformed = |reason: &str| DidError::MalformedDid {
            // Echo at most a bounded prefix: the input may be attacker-sized.
            did: did.chars().take(2 * MAX_MSI_LEN).collect(),
            reason: reason.to_owned(),
        };
        let base = did.split_once('#').map_or(did, |(base, _)| base);
        let msi = base
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or_else(|| malformed("not a did:key"))?;
        if msi.len() > MAX_MSI_LEN {
            return Err(malformed("key identifier too long"));
        }
        if !msi.starts_with('z') {
            return Err(malformed("multibase is not base58btc"));
        }
        let (_, raw) = multibase::decode(msi).map_err(|_| malformed("invalid base58btc"))?;
        let (codec, key) = unsigned_varint::decode::u64(&raw)
            .map_err(|_| malformed("invalid multicodec varint"))?;
        let parsed = match codec {
            ED25519_PUB => {
                let bytes: &[u8; 32] = key
                    .try_into()
                    .map_err(|_| malformed("Ed25519 key must be 32 bytes"))?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| malformed("not an Ed25519 point"))?;
                // from_bytes keeps the given encoding; a non-canonical one (y >= p, or x = -0)
                // would give a second DID for the same key.
                if vk.to_edwards().compress().as_bytes() != bytes {
                    return Err(malformed("non-canonical Ed25519 point"));
                }
                PublicKey::Ed25519(vk)
            }
            P256_PUB => {
                if key.len() != 33 {
                    return Err(malformed("P-256 key must be a 33-byte compressed point"));
                }
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map_err(|_| malformed("not a P-256 point"))?;
                PublicKey::P256(vk)
            }
            SECP256K1_PUB => {
                if key.len() != 33 {
                    return Err(malformed(
                        "secp256k1 key must be a 33-byte compressed point",
                    ));
                }
                let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(key)
                    .map_err(|_| malformed("not a secp256k1 point"))?;
                PublicKey::Secp256k1(vk)
            }
            _ => return Err(malformed("unsupported key type")),
        };
        // One key, one DID: the multibase string must be exactly what we would write (this also
        // rejects the non-minimal varints and non-canonical field elements the decoders let through).
        if parsed.multibase() != msi {
            return Err(malformed("non-canonical encoding"));
        }
        Ok(parsed)
    }

    /// The `did:key` string for this key.
    pub fn did(&self) -> String {
        let mut did = String::with_capacity(DID_KEY_PREFIX.len() + MAX_MSI_LEN);
        did.push_str(DID_KEY_PREFIX);
        did.push_str(&self.multibase());
        did
    }

    /// The base58btc method-specific identifier (`z…`).
    fn multibase(&self) -> String {
        let mut raw = Vec::with_capacity(35);
        match self {
            PublicKey::Ed25519(vk) => {
                push_varint(&mut raw, ED25519_PUB);
                raw.extend_from_slice(vk.as_bytes());
            }
            PublicKey::P256(vk) => {
                push_varint(&mut raw, P256_PUB);
                raw.extend_from_slice(vk.to_encoded_point(true).as_bytes());
            }
            PublicKey::Secp256k1(vk) => {
                push_varint(&mut raw, SECP256K1_PUB);
                raw.extend_from_slice(vk.to_encoded_point(true).as_bytes());
            }
        }
        multibase::encode(multibase::Base::Base58Btc, raw)
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        match self {
            PublicKey::Ed25519(_) => KeyAlg::Ed25519,
            PublicKey::P256(_) => KeyAlg::P256,
            PublicKey::Secp256k1(_) => KeyAlg::Secp256k1,
        }
    }

    /// Verifies `sig` over `msg`. Ed25519 uses `verify_strict`; ECDSA signatures are the 64-byte
    /// `r || s` form over SHA-256 of `msg`. secp256k1 signatures must be low-S normalised; P-256 ones
    /// may be high-S (see below).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), DidError> {
        let ok = match self {
            PublicKey::Ed25519(vk) => {
                let sig = ed25519_dalek::Signature::from_slice(sig)
                    .map_err(|_| DidError::InvalidSignature)?;
                // verify_strict rejects small-order keys and non-canonical R, so a signature cannot
                // be valid for more than one message/key pair.
                vk.verify_strict(msg, &sig).is_ok()
            }
            PublicKey::P256(vk) => {
                // Exactly 64 bytes (r || s); DER and other lengths are refused by from_slice.
                let sig = p256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| DidError::InvalidSignature)?;
                // High-S is accepted on purpose: WebCrypto (browsers, Node) emits P-256 signatures
                // without low-S normalisation, and those clients are the main P-256 issuers. The
                // malleability this allows does not matter here: token identity is the CID of the
                // whole envelope, and we never treat a signature as a unique id.
                vk.verify(msg, &sig).is_ok()
            }
            PublicKey::Secp256k1(vk) => {
                let sig = k256::ecdsa::Signature::from_slice(sig)
                    .map_err(|_| DidError::InvalidSignature)?;
                // secp256k1 signers (Bitcoin/Ethereum tooling, go-ucan) all normalise; require it
                // explicitly rather than rely on the library's verifier default.
                if sig.normalize_s().is_some() {
                    return Err(DidError::InvalidSignature);
                }
                vk.verify(msg, &sig).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(DidError::InvalidSignature)
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.did())
    }
}

/// A private signing key.
pub enum SigningKey {
    /// An Ed25519 key.
    Ed25519(ed25519_dalek::SigningKey),
    /// A P-256 ECDSA key.
    P256(p256::ecdsa::SigningKey),
    /// A secp256k1 ECDSA key.
    Secp256k1(k256::ecdsa::SigningKey),
}

impl SigningKey {
    /// A fresh random key from the operating system's RNG.
    pub fn generate(alg: KeyAlg) -> Self {
        match alg {
            KeyAlg::Ed25519 => SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            KeyAlg::P256 => SigningKey::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyAlg::Secp256k1 => SigningKey::Secp256k1(k256::ecdsa::SigningKey::random(&mut OsRng)),
        }
    }

    /// Reads the key file format: base64 (standard alphabet, with padding) of
    /// varint(0x1300 Ed25519 | 0x1306 P-256 | 0x1301 secp256k1) followed by the raw private key.
    /// Surrounding whitespace is ignored.
    pub fn from_key_file(text: &str) -> Result<Self, DidError> {
        let malformed = |reason: &str| DidError::MalformedKey(reason.to_owned());
        let raw = STANDARD
            .decode(text.trim())
            .map_err(|_| malformed("not base64 (standard alphabet, padded)"))?;
        let (codec, key) = unsigned_varint::decode::u64(&raw)
            .map_err(|_| malformed("invalid multicodec varint"))?;
        let key: &[u8; 32] = match codec {
            ED25519_PRIV | P256_PRIV | SECP256K1_PRIV => key
                .try_into()
                .map_err(|_| malformed("private key must be 32 bytes"))?,
            _ => return Err(malformed("unsupported key type")),
        };
        // Error messages never include key material.
        Ok(match codec {
            ED25519_PRIV => SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(key)),
            P256_PRIV => SigningKey::P256(
                p256::ecdsa::SigningKey::from_slice(key)
                    .map_err(|_| malformed("not a valid P-256 scalar"))?,
            ),
            _ => SigningKey::Secp256k1(
                k256::ecdsa::SigningKey::from_slice(key)
                    .map_err(|_| malformed("not a valid secp256k1 scalar"))?,
            ),
        })
    }

    /// Writes the key file format (no trailing newline).
    pub fn to_key_file(&self) -> String {
        let mut raw = Vec::with_capacity(34);
        match self {
            SigningKey::Ed25519(sk) => {
                push_varint(&mut raw, ED25519_PRIV);
                raw.extend_from_slice(sk.as_bytes());
            }
            SigningKey::P256(sk) => {
                push_varint(&mut raw, P256_PRIV);
                raw.extend_from_slice(&sk.to_bytes());
            }
            SigningKey::Secp256k1(sk) => {
                push_varint(&mut raw, SECP256K1_PRIV);
                raw.extend_from_slice(&sk.to_bytes());
            }
        }
        STANDARD.encode(&raw)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            SigningKey::Ed25519(sk) => PublicKey::Ed25519(sk.verifying_key()),
            SigningKey::P256(sk) => PublicKey::P256(*sk.verifying_key()),
            SigningKey::Secp256k1(sk) => PublicKey::Secp256k1(*sk.verifying_key()),
        }
    }

    /// The `did:key` of the public half.
    pub fn did(&self) -> String {
        self.public().did()
    }

    /// The key's algorithm.
    pub fn alg(&self) -> KeyAlg {
        match self {
            SigningKey::Ed25519(_) => KeyAlg::Ed25519,
            SigningKey::P256(_) => KeyAlg::P256,
            SigningKey::Secp256k1(_) => KeyAlg::Secp256k1,
        }
    }

    /// Signs `msg`. ECDSA signs SHA-256 of `msg`, returns 64-byte `r || s`, low-S.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(sk) => sk.sign(msg).to_bytes().to_vec(),
            SigningKey::P256(sk) => {
                let sig: p256::ecdsa::Signature = sk.sign(msg);
                // p256 does not normalise; we always emit low-S so strict verifiers accept us.
                sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
            }
            SigningKey::Secp256k1(sk) => {
                let sig: k256::ecdsa::Signature = sk.sign(msg);
                sig.normalize_s().unwrap_or(sig).to_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material.
        write!(f, "SigningKey({})", self.did())
    }
}

/// Appends the unsigned varint of `n`.
fn push_varint(out: &mut Vec<u8>, n: u64) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(n, &mut buf));
}

#[cfg(test)]
mod tests {
    use super::*;

    // `principals` of the official UCAN fixture `fixtures/delegation.json`, and the DIDs its token
    // uses: the "bob > carol" delegation has bob as `iss` and `sub`, carol as `aud`.
    const ALICE: &str = "gCa9UfZv+yI5/rvUIt21DaGI7EZJlzFO1uDc5AyJ30c6/w==";
    const BOB: &str = "gCZfj9+RzU2U518TMBNK/fjdGQz34sB4iKE6z+9lQDpCIQ==";
    const CAROL: &str = "gCZC43QGw7ZvYQuKTtBwBy+tdjYrKf0hXU3dd+J0HON5dw==";
    const BOB_DID: &str = "did:key:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrqz";
    const CAROL_DID: &str = "did:key:z6MkmJceVoQSHs45cReEXoLtWm1wosCG8RLxfKwhxoqzoTkC";

    const ALL: [KeyAlg; 3] = [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1];

    fn did_from_raw(codec: u64, key: &[u8]) -> String {
        let mut raw = Vec::new();
        push_varint(&mut raw, codec);
        raw.extend_from_slice(key);
        format!(
            "did:key:{}",
            multibase::encode(multibase::Base::Base58Btc, raw)
        )
    }

    fn key_file_from_raw(raw: &[u8]) -> String {
        STANDARD.encode(raw)
    }

    fn bad_did(did: &str, reason: &str) {
        match PublicKey::from_did(did) {
            Err(DidError::MalformedDid { reason: got, .. }) => {
                assert!(
                    got.contains(reason),
                    "{did}: expected {reason:?}, got {got:?}"
                )
            }
            other => panic!("{did}: expected MalformedDid, got {other:?}"),
        }
    }

    fn bad_key_file(text: &str, reason: &str) {
        match SigningKey::from_key_file(text) {
            Err(DidError::MalformedKey(got)) => {
                assert!(
                    got.contains(reason),
                    "{text}: expected {reason:?}, got {got:?}"
                )
            }
            other => panic!("{text}: expected MalformedKey, got {other:?}"),
        }
    }

    #[test]
    fn fixture_principals_have_the_fixture_dids() {
        let bob = SigningKey::from_key_file(BOB).unwrap();
        let carol = SigningKey::from_key_file(CAROL).unwrap();
        let alice = SigningKey::from_key_file(ALICE).unwrap();
        assert_eq!(bob.did(), BOB_DID);
        assert_eq!(carol.did(), CAROL_DID);
        assert_eq!(alice.alg(), KeyAlg::Ed25519);
        assert!(alice.did().starts_with("did:key:z6Mk"));
        assert_ne!(alice.did(), bob.did());
        // Writing a key file gives back the fixture text byte for byte.
        for text in [ALICE, BOB, CAROL] {
            assert_eq!(SigningKey::from_key_file(text).unwrap().to_key_file(), text);
        }
    }

    #[test]
    fn did_round_trips_for_every_alg() {
        for (alg, prefix) in ALL.into_iter().zip(["z6Mk", "zDn", "zQ3s"]) {
            let key = SigningKey::generate(alg);
            let did = key.did();
            assert!(did.starts_with(&format!("did:key:{prefix}")), "{did}");
            let public = PublicKey::from_did(&did).unwrap();
            assert_eq!(public, key.public());
            assert_eq!(public.alg(), alg);
            assert_eq!(public.did(), did);
            // A DID URL fragment names the same key.
            let with_fragment = format!("{did}#{}", &did["did:key:".len()..]);
            assert_eq!(PublicKey::from_did(&with_fragment).unwrap(), public);
        }
    }

    #[test]
    fn key_file_round_trips_for_every_alg() {
        for alg in ALL {
            let key = SigningKey::generate(alg);
            let text = key.to_key_file();
            let back = SigningKey::from_key_file(&format!("  {text}\n")).unwrap();
            assert_eq!(back.alg(), alg);
            assert_eq!(back.did(), key.did());
            assert_eq!(back.to_key_file(), text);
        }
    }

    #[test]
    fn malformed_dids_are_rejected() {
        let ed = SigningKey::generate(KeyAlg::Ed25519).public();
        let PublicKey::Ed25519(ed_vk) = &ed else {
            unreachable!()
        };
        let p256 = SigningKey::generate(KeyAlg::P256).public();
        let PublicKey::P256(p256_vk) = &p256 else {
            unreachable!()
        };
        let uncompressed = p256_vk.to_encoded_point(false);

        bad_did("", "not a did:key");
        bad_did("did:key:", "not base58btc");
        bad_did("did:web:example.com", "not a did:key");
        bad_did(
            "DID:KEY:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrqz",
            "not a did:key",
        );
        // Base64 multibase of a valid key, and base58btc with characters outside the alphabet.
        let b64 = format!("did:key:m{}", STANDARD.encode(ed_vk.as_bytes()));
        bad_did(&b64, "not base58btc");
        bad_did(
            "did:key:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrq0",
            "invalid base58btc",
        );
        bad_did("did:key:z", "invalid multicodec varint");
        bad_did(&format!("did:key:{}", "z".repeat(10_000)), "too long");
        // Truncated and non-minimal varints.
        bad_did(&did_from_raw(0, &[]).replace("z1", "z"), "varint");
        let mut non_minimal = vec![0xed, 0x81, 0x00];
        non_minimal.extend_from_slice(ed_vk.as_bytes());
        bad_did(
            &format!(
                "did:key:{}",
                multibase::encode(multibase::Base::Base58Btc, non_minimal)
            ),
            "invalid multicodec varint",
        );
        // Unsupported key types: RSA (0x1205) and an Ed25519 *private* key codec.
        bad_did(&did_from_raw(0x1205, &[1; 33]), "unsupported key type");
        bad_did(&did_from_raw(0x1300, &[1; 32]), "unsupported key type");
        // Wrong lengths.
        bad_did(&did_from_raw(0xed, &ed_vk.as_bytes()[..31]), "32 bytes");
        bad_did(
            &did_from_raw(0xed, &[ed_vk.as_bytes().as_slice(), &[0]].concat()),
            "32 bytes",
        );
        // An uncompressed point is long enough to trip the length bound before decoding.
        bad_did(&did_from_raw(0x1200, uncompressed.as_bytes()), "too long");
        bad_did(
            &did_from_raw(0x1200, &uncompressed.as_bytes()[..34]),
            "33-byte compressed",
        );
        bad_did(&did_from_raw(0xe7, &[2; 32]), "33-byte compressed");
        // Not points: an x-coordinate >= p, and a bad SEC1 tag byte.
        bad_did(
            &did_from_raw(0x1200, &[[2].as_slice(), &[0xff; 32]].concat()),
            "not a P-256 point",
        );
        bad_did(
            &did_from_raw(0xe7, &[[2].as_slice(), &[0xff; 32]].concat()),
            "not a secp256k1 point",
        );
        bad_did(
            &did_from_raw(0x1200, &[[5].as_slice(), &[1; 32]].concat()),
            "not a P-256 point",
        );
        // y = 2: x^2 = (y^2 - 1) / (d y^2 + 1) has no root, so no point has this encoding.
        let mut y2 = [0u8; 32];
        y2[0] = 2;
        bad_did(&did_from_raw(0xed, &y2), "not an Ed25519 point");
        // y = p + 1 is a non-canonical encoding of y = 1 (the identity).
        let mut p_plus_1 = [0xff; 32];
        p_plus_1[0] = 0xee;
        p_plus_1[31] = 0x7f;
        bad_did(
            &did_from_raw(0xed, &p_plus_1),
            "non-canonical Ed25519 point",
        );
    }

    #[test]
    fn malformed_key_files_are_rejected() {
        bad_key_file("", "invalid multicodec varint");
        bad_key_file("not base64!", "not base64");
        // The fixture key without its padding.
        bad_key_file(BOB.trim_end_matches('='), "not base64");
        bad_key_file(&key_file_from_raw(&[0x80]), "invalid multicodec varint");
        bad_key_file(
            &key_file_from_raw(&[[0xed, 0x01].as_slice(), &[1; 32]].concat()),
            "unsupported",
        );
        bad_key_file(
            &key_file_from_raw(&[[0x80, 0x26].as_slice(), &[1; 31]].concat()),
            "32 bytes",
        );
        bad_key_file(
            &key_file_from_raw(&[[0x86, 0x26].as_slice(), &[1; 33]].concat()),
            "32 bytes",
        );
        // Zero and >= group order are not private keys.
        bad_key_file(
            &key_file_from_raw(&[[0x86, 0x26].as_slice(), &[0; 32]].concat()),
            "P-256 scalar",
        );
        bad_key_file(
            &key_file_from_raw(&[[0x81, 0x26].as_slice(), &[0xff; 32]].concat()),
            "secp256k1 scalar",
        );
    }

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        for alg in ALL {
            let key = SigningKey::generate(alg);
            let other = SigningKey::generate(alg);
            let sig = key.sign(b"message");
            assert_eq!(sig.len(), 64);
            assert_eq!(key.public().verify(b"message", &sig), Ok(()));
            assert_eq!(
                key.public().verify(b"massage", &sig),
                Err(DidError::InvalidSignature)
            );
            assert_eq!(
                other.public().verify(b"message", &sig),
                Err(DidError::InvalidSignature)
            );
            assert_eq!(
                key.public().verify(b"message", &sig[..63]),
                Err(DidError::InvalidSignature)
            );
            let long = [sig.as_slice(), &[0]].concat();
            assert_eq!(
                key.public().verify(b"message", &long),
                Err(DidError::InvalidSignature)
            );
            assert_eq!(
                key.public().verify(b"message", &[]),
                Err(DidError::InvalidSignature)
            );
        }
    }

    #[test]
    fn ecdsa_signatures_are_low_s() {
        let p = SigningKey::generate(KeyAlg::P256);
        let k = SigningKey::generate(KeyAlg::Secp256k1);
        // Half of all raw P-256 signatures are high-S, so 32 messages would miss a missing
        // normalisation with probability 2^-32.
        for i in 0..32u8 {
            let sig = p256::ecdsa::Signature::from_slice(&p.sign(&[i])).unwrap();
            assert!(sig.normalize_s().is_none(), "P-256 signature {i} is high-S");
            let sig = k256::ecdsa::Signature::from_slice(&k.sign(&[i])).unwrap();
            assert!(
                sig.normalize_s().is_none(),
                "secp256k1 signature {i} is high-S"
            );
        }
    }

    #[test]
    fn p256_accepts_high_s_but_secp256k1_does_not() {
        let p = SigningKey::generate(KeyAlg::P256);
        let sig = p256::ecdsa::Signature::from_slice(&p.sign(b"m")).unwrap();
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(
            high.normalize_s().is_some(),
            "test signature must be high-S"
        );
        assert_eq!(p.public().verify(b"m", &high.to_bytes()), Ok(()));

        let k = SigningKey::generate(KeyAlg::Secp256k1);
        let sig = k256::ecdsa::Signature::from_slice(&k.sign(b"m")).unwrap();
        let (r, s) = sig.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(
            high.normalize_s().is_some(),
            "test signature must be high-S"
        );
        assert_eq!(
            k.public().verify(b"m", &high.to_bytes()),
            Err(DidError::InvalidSignature)
        );
    }

    #[test]
    fn ed25519_rejects_small_order_keys() {
        // The identity point is a valid encoding, and with R = identity, S = 0 the plain
        // verification equation holds for every message; verify_strict must refuse it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let key = PublicKey::from_did(&did_from_raw(0xed, &identity)).unwrap();
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert_eq!(
            key.verify(b"anything", &sig),
            Err(DidError::InvalidSignature)
        );
    }

    #[test]
    fn debug_never_shows_private_material() {
        let key = SigningKey::from_key_file(BOB).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, format!("SigningKey({BOB_DID})"));
        assert_eq!(
            format!("{:?}", key.public()),
            format!("PublicKey({BOB_DID})")
        );
    }
}
