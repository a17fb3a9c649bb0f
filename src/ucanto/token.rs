//! UCAN 0.9.1 tokens in the `@ipld/dag-ucan` encoding: decoding, signature verification and issuing.
//!
//! Two forms reach the gateway:
//! - the **CBOR form** (a DAG-CBOR block): `{s, v, att, aud, exp, fct?, iss, nnc?, nbf?, prf}` with
//!   `iss`/`aud` as multicodec key bytes (`did:key`) or `0x0d1d ‖ utf8(rest)` for other DIDs, `prf` as
//!   links and `s` as a varsig-style signature (`varint(code) ‖ varint(len) ‖ raw`);
//! - the **JWT form** (a raw block holding `header.payload.signature`), used when a token cannot be
//!   represented in CBOR without changing its signed bytes.
//!
//! In both forms the signature covers the JWT signing input `base64url(header).base64url(payload)`
//! with DAG-JSON header `{alg, typ: "JWT", ucv}` and payload `{att, aud, exp, fct?, iss, nbf?, nnc?,
//! prf}`. For the CBOR form that input is rebuilt from the decoded fields exactly as `@ipld/dag-ucan`
//! does (optional fields left out when empty); for the JWT form it is the bytes received.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::{KeyAlg, PublicKey, SigningKey};
use crate::ipld::{DAG_CBOR, MAX_DEPTH, RAW, check_limits, dag_cbor_cid, from_dag_json};

/// The UCAN version this gateway issues.
pub const VERSION: &str = "0.9.1";

/// Varsig-style signature codes used by `@ipld/dag-ucan`.
const EDDSA: u64 = 0xd0ed;
const ES256: u64 = 0xd01200;
const ES256K: u64 = 0xd0e7;

/// Multicodec of a non-`did:key` DID in `iss`/`aud` bytes.
const DID_CORE: u64 = 0x0d1d;
const ED25519_PUB: u64 = 0xed;
const P256_PUB: u64 = 0x1200;
const SECP256K1_PUB: u64 = 0xe7;

/// Why a token is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The bytes are not a dag-ucan token (wrong shape, type or encoding).
    #[error("malformed UCAN: {0}")]
    Malformed(String),
    /// The signature algorithm is not one this gateway verifies, or does not fit the issuer's key.
    #[error("unsupported signature: {0}")]
    UnsupportedSignature(String),
    /// The signature does not verify against the issuer.
    #[error("signature by {0} does not verify")]
    InvalidSignature(String),
}

fn malformed(message: impl Into<String>) -> TokenError {
    TokenError::Malformed(message.into())
}

/// One capability: `{with, can, nb?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Capability {
    /// The resource (a URI: a DID, or `ucan:*`).
    pub with: String,
    /// The ability, `ns/name`, `ns/*` or `*`.
    pub can: String,
    /// Caveats (absent `nb` reads as empty).
    pub nb: BTreeMap<String, Ipld>,
}

impl Capability {
    /// The capability as an IPLD map (`nb` left out when empty, as ucanto does).
    pub fn to_ipld(&self) -> Ipld {
        let mut map = BTreeMap::from([
            ("with".to_owned(), Ipld::String(self.with.clone())),
            ("can".to_owned(), Ipld::String(self.can.clone())),
        ]);
        if !self.nb.is_empty() {
            map.insert("nb".to_owned(), Ipld::Map(self.nb.clone()));
        }
        Ipld::Map(map)
    }
}

/// A decoded token. Its fields are trusted only after [`Ucan::verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Ucan {
    /// The CID of the block it came in (computed from the bytes received).
    pub cid: Cid,
    /// `v`, e.g. `0.9.1`.
    pub version: String,
    /// Issuer DID.
    pub iss: String,
    /// Audience DID.
    pub aud: String,
    /// Capabilities, as signed (each also parsed into [`Capability`]).
    pub att: Vec<Capability>,
    /// Expiry, Unix seconds; `None` is `null` (never).
    pub exp: Option<i64>,
    /// Not before, Unix seconds.
    pub nbf: Option<i64>,
    /// Nonce.
    pub nnc: Option<String>,
    /// Facts.
    pub fct: Vec<Ipld>,
    /// Proof links.
    pub prf: Vec<Cid>,
    alg: u64,
    signature: Vec<u8>,
    signing_input: Vec<u8>,
}

/// The fields of a token to issue.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UcanFields {
    /// Audience DID.
    pub aud: String,
    /// Capabilities.
    pub att: Vec<Capability>,
    /// Expiry (`None`: never).
    pub exp: Option<i64>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Nonce.
    pub nnc: Option<String>,
    /// Facts.
    pub fct: Vec<Ipld>,
    /// Proof links.
    pub prf: Vec<Cid>,
}

impl Ucan {
    /// Decodes the block `bytes` named `cid` (DAG-CBOR: CBOR form; raw: JWT form). The CID must
    /// be the one computed from `bytes`.
    pub fn decode(cid: Cid, bytes: &[u8]) -> Result<Ucan, TokenError> {
        match cid.codec() {
            DAG_CBOR => decode_cbor(cid, bytes),
            RAW => decode_jwt(cid, bytes),
            other => Err(malformed(format!(
                "codec 0x{other:x} is not a UCAN encoding"
            ))),
        }
    }

    /// Verifies the signature against the issuer's `did:key`.
    pub fn verify(&self) -> Result<(), TokenError> {
        self.verify_with(&self.issuer_key()?)
    }

    /// The issuer's key, parsed from its `did:key`.
    pub fn issuer_key(&self) -> Result<PublicKey, TokenError> {
        PublicKey::from_did(&self.iss)
            .map_err(|e| TokenError::UnsupportedSignature(format!("issuer: {e}")))
    }

    /// Verifies the signature against `key`, the issuer's (see [`Ucan::issuer_key`]).
    pub fn verify_with(&self, key: &PublicKey) -> Result<(), TokenError> {
        let expected = alg_code(key.alg());
        if expected != self.alg {
            return Err(TokenError::UnsupportedSignature(format!(
                "{} does not sign with {}",
                self.iss,
                alg_name(self.alg).unwrap_or("an unknown algorithm")
            )));
        }
        key.verify(&self.signing_input, &self.signature)
            .map_err(|_| TokenError::InvalidSignature(self.iss.clone()))
    }

    /// The JWT signing input the signature covers. Replay protection keys on it, so one signed
    /// statement counts once whatever form or signature encoding carries it.
    pub fn signing_input(&self) -> &[u8] {
        &self.signing_input
    }

    /// Issues a token in the CBOR form, signed by `issuer`; gives its CID and block bytes.
    pub fn issue(fields: &UcanFields, issuer: &SigningKey) -> Result<(Cid, Vec<u8>), TokenError> {
        let iss = issuer.did();
        let alg = alg_code(issuer.alg());
        let att: Vec<Ipld> = fields.att.iter().map(Capability::to_ipld).collect();
        let input = signing_input(
            VERSION,
            alg,
            &iss,
            &fields.aud,
            &att,
            fields.exp,
            fields.nbf,
            &fields.nnc,
            &fields.fct,
            &fields.prf,
        )?;
        let sig = encode_signature(issuer.alg(), &issuer.sign(&input));
        let mut map = BTreeMap::from([
            ("v".to_owned(), Ipld::String(VERSION.to_owned())),
            ("s".to_owned(), Ipld::Bytes(sig)),
            ("iss".to_owned(), Ipld::Bytes(did_to_bytes(&iss)?)),
            ("aud".to_owned(), Ipld::Bytes(did_to_bytes(&fields.aud)?)),
            ("att".to_owned(), Ipld::List(att)),
            (
                "exp".to_owned(),
                fields.exp.map_or(Ipld::Null, |e| Ipld::Integer(e.into())),
            ),
            (
                "prf".to_owned(),
                Ipld::List(fields.prf.iter().map(|c| Ipld::Link(*c)).collect()),
            ),
        ]);
        if !fields.fct.is_empty() {
            map.insert("fct".to_owned(), Ipld::List(fields.fct.clone()));
        }
        if let Some(nnc) = &fields.nnc {
            map.insert("nnc".to_owned(), Ipld::String(nnc.clone()));
        }
        if let Some(nbf) = fields.nbf.filter(|n| *n != 0) {
            map.insert("nbf".to_owned(), Ipld::Integer(nbf.into()));
        }
        let bytes = crate::ipld::to_dag_cbor(&Ipld::Map(map)).map_err(malformed)?;
        Ok((dag_cbor_cid(&bytes), bytes))
    }
}

/// A signature in the `@ipld/dag-ucan` encoding: `varint(code) ‖ varint(len) ‖ raw`.
pub fn encode_signature(alg: KeyAlg, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 6);
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(alg_code(alg), &mut buf));
    out.extend_from_slice(unsigned_varint::encode::u64(raw.len() as u64, &mut buf));
    out.extend_from_slice(raw);
    out
}

/// Reads a signature in the `@ipld/dag-ucan` encoding into its code and raw bytes.
fn decode_signature(bytes: &[u8]) -> Result<(u64, Vec<u8>), TokenError> {
    let (code, rest) = unsigned_varint::decode::u64(bytes)
        .map_err(|_| malformed("signature: bad algorithm varint"))?;
    let (len, rest) = unsigned_varint::decode::usize(rest)
        .map_err(|_| malformed("signature: bad length varint"))?;
    if alg_name(code).is_none() {
        return Err(TokenError::UnsupportedSignature(format!(
            "algorithm code 0x{code:x}"
        )));
    }
    if rest.len() != len {
        return Err(malformed("signature: length does not match"));
    }
    Ok((code, rest.to_vec()))
}

fn alg_code(alg: KeyAlg) -> u64 {
    match alg {
        KeyAlg::Ed25519 => EDDSA,
        KeyAlg::P256 => ES256,
        KeyAlg::Secp256k1 => ES256K,
    }
}

fn alg_name(code: u64) -> Option<&'static str> {
    match code {
        EDDSA => Some("EdDSA"),
        ES256 => Some("ES256"),
        ES256K => Some("ES256K"),
        _ => None,
    }
}

fn alg_from_name(name: &str) -> Option<u64> {
    [EDDSA, ES256, ES256K]
        .into_iter()
        .find(|code| alg_name(*code) == Some(name))
}

/// `iss`/`aud` bytes → DID string.
fn did_from_bytes(bytes: &[u8]) -> Result<String, TokenError> {
    let (code, rest) =
        unsigned_varint::decode::u64(bytes).map_err(|_| malformed("principal: bad varint"))?;
    match code {
        ED25519_PUB | P256_PUB | SECP256K1_PUB => Ok(format!(
            "did:key:{}",
            multibase::encode(multibase::Base::Base58Btc, bytes)
        )),
        DID_CORE => std::str::from_utf8(rest)
            .map(|s| format!("did:{s}"))
            .map_err(|_| malformed("principal: DID is not UTF-8")),
        other => Err(malformed(format!(
            "principal: unsupported key type 0x{other:x}"
        ))),
    }
}

/// DID string → `iss`/`aud` bytes.
fn did_to_bytes(did: &str) -> Result<Vec<u8>, TokenError> {
    if let Some(msi) = did.strip_prefix("did:key:") {
        let (_, bytes) = multibase::decode(msi).map_err(|_| malformed("bad did:key"))?;
        return Ok(bytes);
    }
    let rest = did
        .strip_prefix("did:")
        .ok_or_else(|| malformed(format!("{did:?} is not a DID")))?;
    let mut buf = unsigned_varint::encode::u64_buffer();
    let mut out = unsigned_varint::encode::u64(DID_CORE, &mut buf).to_vec();
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

fn get<'a>(map: &'a BTreeMap<String, Ipld>, key: &str) -> Option<&'a Ipld> {
    map.get(key)
}

fn string(map: &BTreeMap<String, Ipld>, key: &str) -> Result<String, TokenError> {
    match get(map, key) {
        Some(Ipld::String(s)) => Ok(s.clone()),
        _ => Err(malformed(format!("`{key}` must be a string"))),
    }
}

fn opt_int(map: &BTreeMap<String, Ipld>, key: &str) -> Result<Option<i64>, TokenError> {
    match get(map, key) {
        None | Some(Ipld::Null) => Ok(None),
        Some(Ipld::Integer(n)) => i64::try_from(*n)
            .map(Some)
            .map_err(|_| malformed(format!("`{key}` is out of range"))),
        _ => Err(malformed(format!("`{key}` must be an integer"))),
    }
}

/// `exp` is required and is an integer or `null`.
fn expiry(map: &BTreeMap<String, Ipld>) -> Result<Option<i64>, TokenError> {
    match get(map, "exp") {
        None => Err(malformed("`exp` is required (an integer or null)")),
        _ => opt_int(map, "exp"),
    }
}

fn list<'a>(map: &'a BTreeMap<String, Ipld>, key: &str) -> Result<&'a [Ipld], TokenError> {
    match get(map, key) {
        None => Ok(&[]),
        Some(Ipld::List(items)) => Ok(items),
        _ => Err(malformed(format!("`{key}` must be a list"))),
    }
}

fn capabilities(att: &[Ipld]) -> Result<Vec<Capability>, TokenError> {
    att.iter()
        .map(|cap| {
            let Ipld::Map(map) = cap else {
                return Err(malformed("a capability must be a map"));
            };
            let can = string(map, "can")?;
            // As @ipld/dag-ucan: an ability has a segment before and after a `/`, or is `*`.
            if can != "*"
                && !can
                    .get(1..can.len().saturating_sub(1))
                    .is_some_and(|m| m.contains('/'))
            {
                return Err(malformed(format!("ability {can:?} has no path segment")));
            }
            let with = string(map, "with")?;
            if !with.contains(':') {
                return Err(malformed(format!("resource {with:?} is not a URI")));
            }
            let nb = match get(map, "nb") {
                None => BTreeMap::new(),
                Some(Ipld::Map(nb)) => nb.clone(),
                Some(_) => return Err(malformed("`nb` must be a map")),
            };
            Ok(Capability { with, can, nb })
        })
        .collect()
}

fn check_version(v: &str) -> Result<(), TokenError> {
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0] == "0"
    {
        Ok(())
    } else {
        Err(malformed(format!("unsupported version {v:?}")))
    }
}

fn decode_cbor(cid: Cid, bytes: &[u8]) -> Result<Ucan, TokenError> {
    let value = crate::ipld::from_dag_cbor_strict(bytes).map_err(malformed)?;
    let Ipld::Map(map) = value else {
        return Err(malformed("a UCAN must be a map"));
    };
    let version = string(&map, "v")?;
    check_version(&version)?;
    let Some(Ipld::Bytes(s)) = get(&map, "s") else {
        return Err(malformed("`s` must be bytes"));
    };
    let (alg, signature) = decode_signature(s)?;
    let principal = |key: &str| match get(&map, key) {
        Some(Ipld::Bytes(b)) => did_from_bytes(b),
        _ => Err(malformed(format!("`{key}` must be bytes"))),
    };
    let (iss, aud) = (principal("iss")?, principal("aud")?);
    let raw_att = match get(&map, "att") {
        Some(Ipld::List(items)) => items.clone(),
        _ => return Err(malformed("`att` must be a list")),
    };
    let att = capabilities(&raw_att)?;
    let prf = list(&map, "prf")?
        .iter()
        .map(|p| match p {
            Ipld::Link(cid) => Ok(*cid),
            _ => Err(malformed("`prf` must hold links")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let fct = list(&map, "fct")?.to_vec();
    let nnc = match get(&map, "nnc") {
        None => None,
        Some(Ipld::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("`nnc` must be a string")),
    };
    let exp = expiry(&map)?;
    let nbf = opt_int(&map, "nbf")?;
    let signing_input = signing_input(
        &version, alg, &iss, &aud, &raw_att, exp, nbf, &nnc, &fct, &prf,
    )?;
    Ok(Ucan {
        cid,
        version,
        iss,
        aud,
        att,
        exp,
        nbf,
        nnc,
        fct,
        prf,
        alg,
        signature,
        signing_input,
    })
}

fn decode_jwt(cid: Cid, bytes: &[u8]) -> Result<Ucan, TokenError> {
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("JWT is not UTF-8"))?;
    let mut parts = text.split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three parts"));
    };
    let json = |part: &str, what: &str| -> Result<BTreeMap<String, Ipld>, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| malformed(format!("JWT {what} is not base64url")))?;
        let text =
            std::str::from_utf8(&bytes).map_err(|_| malformed(format!("JWT {what} not UTF-8")))?;
        // Depth is bounded before anything walks the value (the JSON parser itself is bounded too).
        let value = from_dag_json(text).map_err(|e| malformed(format!("JWT {what}: {e}")))?;
        check_limits(&value, MAX_DEPTH).map_err(malformed)?;
        match value {
            Ipld::Map(map) => Ok(map),
            _ => Err(malformed(format!("JWT {what} must be an object"))),
        }
    };
    let header_map = json(header, "header")?;
    let map = json(payload, "payload")?;
    let alg_text = string(&header_map, "alg")?;
    let alg = alg_from_name(&alg_text)
        .ok_or_else(|| TokenError::UnsupportedSignature(format!("algorithm {alg_text:?}")))?;
    let version = string(&header_map, "ucv")?;
    check_version(&version)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| malformed("JWT signature is not base64url"))?;
    let raw_att = match get(&map, "att") {
        Some(Ipld::List(items)) => items.clone(),
        _ => return Err(malformed("`att` must be a list")),
    };
    let prf = list(&map, "prf")?
        .iter()
        .map(|p| match p {
            Ipld::String(s) => Cid::try_from(s.as_str()).map_err(|_| {
                malformed("`prf` entries must be CIDs (inline proofs are not supported)")
            }),
            _ => Err(malformed("`prf` must hold CID strings")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let nnc = match get(&map, "nnc") {
        None => None,
        Some(Ipld::String(s)) => Some(s.clone()),
        Some(_) => return Err(malformed("`nnc` must be a string")),
    };
    Ok(Ucan {
        cid,
        version,
        iss: string(&map, "iss")?,
        aud: string(&map, "aud")?,
        att: capabilities(&raw_att)?,
        exp: expiry(&map)?,
        nbf: opt_int(&map, "nbf")?,
        nnc,
        fct: list(&map, "fct")?.to_vec(),
        prf,
        alg,
        signature,
        signing_input: text.as_bytes()[..header.len() + 1 + payload.len()].to_vec(),
    })
}

/// `base64url(header).base64url(payload)` as `@ipld/dag-ucan`'s formatter builds it.
#[allow(clippy::too_many_arguments)]
fn signing_input(
    version: &str,
    alg: u64,
    iss: &str,
    aud: &str,
    att: &[Ipld],
    exp: Option<i64>,
    nbf: Option<i64>,
    nnc: &Option<String>,
    fct: &[Ipld],
    prf: &[Cid],
) -> Result<Vec<u8>, TokenError> {
    let name = alg_name(alg).ok_or_else(|| malformed("unknown signature algorithm"))?;
    let header = Ipld::Map(BTreeMap::from([
        ("alg".to_owned(), Ipld::String(name.to_owned())),
        ("typ".to_owned(), Ipld::String("JWT".to_owned())),
        ("ucv".to_owned(), Ipld::String(version.to_owned())),
    ]));
    let mut payload = BTreeMap::from([
        ("iss".to_owned(), Ipld::String(iss.to_owned())),
        ("aud".to_owned(), Ipld::String(aud.to_owned())),
        ("att".to_owned(), Ipld::List(att.to_vec())),
        (
            "exp".to_owned(),
            exp.map_or(Ipld::Null, |e| Ipld::Integer(e.into())),
        ),
        (
            "prf".to_owned(),
            Ipld::List(prf.iter().map(|c| Ipld::String(c.to_string())).collect()),
        ),
    ]);
    // Optional fields are left out when empty, exactly as the formatter does.
    if !fct.is_empty() {
        payload.insert("fct".to_owned(), Ipld::List(fct.to_vec()));
    }
    if let Some(nnc) = nnc.as_ref().filter(|n| !n.is_empty()) {
        payload.insert("nnc".to_owned(), Ipld::String(nnc.clone()));
    }
    if let Some(nbf) = nbf.filter(|n| *n != 0) {
        payload.insert("nbf".to_owned(), Ipld::Integer(nbf.into()));
    }
    let header = serde_ipld_dagjson::to_vec(&header).map_err(|e| malformed(e.to_string()))?;
    let payload =
        serde_ipld_dagjson::to_vec(&Ipld::Map(payload)).map_err(|e| malformed(e.to_string()))?;
    let mut out = URL_SAFE_NO_PAD.encode(header).into_bytes();
    out.push(b'.');
    out.extend_from_slice(URL_SAFE_NO_PAD.encode(payload).as_bytes());
    Ok(out)
}
