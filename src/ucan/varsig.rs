//! Varsig v1 headers (the `h` field of an envelope): which algorithm signed the payload and how the
//! payload was encoded. Only DAG-CBOR payloads and the three `did:key` algorithms are accepted.
//!
//! Layout (all fields unsigned varints): `0x34` varsig prefix, `0x01` version, then the algorithm
//! segment, then the payload encoding (`0x71` DAG-CBOR). The algorithm segments follow the varsig v1
//! spec (ChainAgnostic/varsig) as implemented by ucan-wg/go-varsig and iso-ucan, whose round-trip
//! vectors give exactly these headers:
//!
//! | alg     | algorithm segment                                  | header bytes              |
//! |---------|----------------------------------------------------|---------------------------|
//! | Ed25519 | `0xed` EdDSA, `0xed` curve edwards25519, `0x13` SHA-512 | `34 01 ed 01 ed 01 13 71` |
//! | ES256   | `0xec` ECDSA, `0x1200` curve P-256, `0x12` SHA-256 | `34 01 ec 01 80 24 12 71` |
//! | ES256K  | `0xec` ECDSA, `0xe7` curve secp256k1, `0x12` SHA-256 | `34 01 ec 01 e7 01 12 71` |
//!
//! We parse the fields rather than compare whole byte strings only to give precise errors; the accepted
//! set is exactly the three headers above (a varint must be minimal, nothing may follow).

use std::convert::Infallible;

use crate::did::KeyAlg;

const PREFIX: u64 = 0x34;
const VERSION: u64 = 0x01;
const EDDSA: u64 = 0xed;
const ECDSA: u64 = 0xec;
const CURVE_ED25519: u64 = 0xed;
const CURVE_P256: u64 = 0x1200;
const CURVE_SECP256K1: u64 = 0xe7;
const SHA2_256: u64 = 0x12;
const SHA2_512: u64 = 0x13;
const DAG_CBOR: u64 = 0x71;

const ED25519_HEADER: &[u8] = &[0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x71];
const ES256_HEADER: &[u8] = &[0x34, 0x01, 0xec, 0x01, 0x80, 0x24, 0x12, 0x71];
const ES256K_HEADER: &[u8] = &[0x34, 0x01, 0xec, 0x01, 0xe7, 0x01, 0x12, 0x71];

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

    /// The canonical header bytes for this algorithm, without allocating.
    pub fn as_bytes(&self) -> &'static [u8] {
        match self.alg {
            KeyAlg::Ed25519 => ED25519_HEADER,
            KeyAlg::P256 => ES256_HEADER,
            KeyAlg::Secp256k1 => ES256K_HEADER,
        }
    }

    /// The canonical header bytes for this algorithm.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// Parses header bytes; anything but a known algorithm with a DAG-CBOR payload encoding is an error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeaderError> {
        // Fast path: every valid header is one of three constants.
        for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
            if bytes == Header::for_alg(alg).as_bytes() {
                return Ok(Header { alg });
            }
        }
        // Slow path, only to say what is wrong.
        Err(HeaderError(diagnose(bytes)))
    }
}

/// Explains why `bytes` is not one of the accepted headers.
fn diagnose(bytes: &[u8]) -> String {
    let mut rest = bytes;
    let mut next = |field: &str| -> Result<u64, String> {
        let (n, tail) = unsigned_varint::decode::u64(rest)
            .map_err(|e| format!("{field}: invalid varint ({e})"))?;
        rest = tail;
        Ok(n)
    };
    // Every path ends in an error: a header that parsed fully would have matched a constant.
    let outcome: Result<Infallible, String> = (|| {
        if next("prefix")? != PREFIX {
            return Err("not a varsig (prefix is not 0x34)".to_owned());
        }
        let version = next("version")?;
        if version != VERSION {
            return Err(format!("unsupported varsig version {version}"));
        }
        let (want_curve, want_hash) = match next("algorithm")? {
            EDDSA => (&[CURVE_ED25519][..], SHA2_512),
            ECDSA => (&[CURVE_P256, CURVE_SECP256K1][..], SHA2_256),
            other => return Err(format!("unsupported signature algorithm {other:#x}")),
        };
        let curve = next("curve")?;
        if !want_curve.contains(&curve) {
            return Err(format!("unsupported curve {curve:#x}"));
        }
        let hash = next("hash")?;
        if hash != want_hash {
            return Err(format!("unsupported hash {hash:#x} for this curve"));
        }
        let encoding = next("payload encoding")?;
        if encoding != DAG_CBOR {
            return Err(format!("payload encoding {encoding:#x} is not DAG-CBOR"));
        }
        Err("trailing bytes after header".to_owned())
    })();
    match outcome {
        Err(reason) => reason,
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text)
            .unwrap()
    }

    #[test]
    fn ed25519_header_matches_fixture() {
        // The `h` field of the official delegation fixture.
        assert_eq!(
            Header::for_alg(KeyAlg::Ed25519).to_bytes(),
            b64("NAHtAe0BE3E")
        );
        assert_eq!(
            Header::from_bytes(&b64("NAHtAe0BE3E")),
            Ok(Header::for_alg(KeyAlg::Ed25519))
        );
    }

    #[test]
    fn ecdsa_headers_match_go_varsig_vectors() {
        // ucan-wg/go-varsig round-trip vectors: ES256 "3401ec0180241271", ES256K "3401ec01e7011271".
        assert_eq!(
            Header::for_alg(KeyAlg::P256).to_bytes(),
            [0x34, 0x01, 0xec, 0x01, 0x80, 0x24, 0x12, 0x71]
        );
        assert_eq!(
            Header::for_alg(KeyAlg::Secp256k1).to_bytes(),
            [0x34, 0x01, 0xec, 0x01, 0xe7, 0x01, 0x12, 0x71]
        );
    }

    #[test]
    fn round_trips_every_alg() {
        for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
            let h = Header::for_alg(alg);
            assert_eq!(Header::from_bytes(&h.to_bytes()), Ok(h));
        }
    }

    fn rejected(bytes: &[u8], reason: &str) {
        let err = Header::from_bytes(bytes).unwrap_err();
        assert!(err.0.contains(reason), "{bytes:02x?}: {err}");
    }

    #[test]
    fn rejects_malformed_headers() {
        rejected(&[], "prefix: invalid varint");
        rejected(&[0x35, 0x01], "not a varsig");
        rejected(&[0x34, 0x00, 0xed, 0x01], "version 0");
        rejected(
            &[0x34, 0x01, 0x85, 0x24, 0x12, 0x80, 0x02, 0x71],
            "algorithm 0x1205",
        );
        rejected(
            &[0x34, 0x01, 0xec, 0x01, 0x81, 0x24, 0x20, 0x71],
            "curve 0x1201",
        );
        // ES256 with SHA-512.
        rejected(
            &[0x34, 0x01, 0xec, 0x01, 0x80, 0x24, 0x13, 0x71],
            "hash 0x13",
        );
        // Ed25519 over DAG-JSON, and over raw bytes.
        rejected(
            &[0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0xa9, 0x02],
            "not DAG-CBOR",
        );
        rejected(
            &[0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x5f],
            "not DAG-CBOR",
        );
        rejected(
            &[0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x71, 0x00],
            "trailing",
        );
        // Truncated, and a non-minimal varint (0x34 written in two bytes).
        rejected(
            &[0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13],
            "payload encoding",
        );
        rejected(
            &[0xb4, 0x00, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x71],
            "prefix",
        );
    }
}
