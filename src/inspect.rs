//! A readable view of any token or container, for people: each token's kind, CID, signature status
//! and payload as DAG-JSON, and for each invocation its proof chain from the root to the invoker.
//! `ucan-gateway inspect` prints it and `POST /inspect` answers with it, so the CLI and the web
//! viewer show the same thing.
//!
//! Nothing here validates authority: a signature is checked against the token's own issuer and the
//! chain is read from the invocation's `prf` as written. `verify` (and the gateway) judge a chain;
//! this only shows it, including the parts that would fail.

use std::collections::HashMap;

use cid::Cid;
use ipld_core::ipld::Ipld;
use serde_json::{Value, json};

use crate::did::PublicKey;
use crate::ipld::to_dag_json;
use crate::receipt::Receipt;
use crate::ucan::container::{Container, ContainerError};
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::invocation::Invocation;

/// Splits input into token byte strings: one raw token, or the tokens of a container in any form.
pub fn split_tokens(bytes: &[u8]) -> Result<Vec<Vec<u8>>, ContainerError> {
    // A raw token is a two-element CBOR array (0x82); every container header is a printable byte.
    if bytes.first() == Some(&0x82) {
        return Ok(vec![bytes.to_vec()]);
    }
    Container::decode(bytes)
        .map(|c| c.tokens)
        .map_err(|e| match e {
            ContainerError::Malformed(m) => {
                ContainerError::Malformed(format!("not a UCAN token or container: {m}"))
            }
            limit => limit,
        })
}

/// One token, read.
#[derive(Debug, Clone)]
pub struct TokenView {
    /// `delegation`, `invocation` or `receipt` (an invocation of `/ucan/assert` that reads as one).
    pub kind: &'static str,
    /// The token's CID.
    pub cid: Cid,
    /// The payload's type tag, e.g. `ucan/dlg@1.0.0`.
    pub tag: String,
    /// The signature algorithm of the header.
    pub alg: String,
    /// `valid`, `invalid: …` or `unverifiable: …`.
    pub signature: String,
    /// The payload as DAG-JSON.
    pub payload: Value,
    /// `iss`, `aud`, `sub` and `cmd`, where the payload has them (for drawing chains).
    iss: Option<String>,
    aud: Option<String>,
    sub: Option<String>,
    cmd: Option<String>,
    /// The invocation's `prf`, root first.
    prf: Vec<Cid>,
}

/// Every token of an input, and each invocation's chain.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The tokens in input order; a token that does not decode is its error and its length.
    pub tokens: Vec<Result<TokenView, (String, usize)>>,
}

impl Inspection {
    /// Reads `bytes`: a raw token or a container.
    pub fn of(bytes: &[u8]) -> Result<Inspection, ContainerError> {
        let tokens = split_tokens(bytes)?
            .iter()
            .map(|token| view(token).map_err(|e| (e, token.len())))
            .collect();
        Ok(Inspection { tokens })
    }

    /// Whether every token decoded and its signature verifies.
    pub fn all_valid(&self) -> bool {
        self.tokens
            .iter()
            .all(|t| t.as_ref().is_ok_and(|t| t.signature == "valid"))
    }

    /// One token as JSON (`{kind, cid, tag, alg, signature, payload}`, or `{error, bytes}`).
    pub fn token_json(token: &Result<TokenView, (String, usize)>) -> Value {
        match token {
            Ok(t) => json!({
                "kind": t.kind,
                "cid": t.cid.to_string(),
                "tag": t.tag,
                "alg": t.alg,
                "signature": t.signature,
                "payload": t.payload,
            }),
            Err((error, bytes)) => json!({ "error": error, "bytes": bytes }),
        }
    }

    /// `{tokens: [...], chains: [...], valid}`. Each chain belongs to one invocation (receipts
    /// included) with proofs: `{invocation, links: [{cid, iss, aud, sub, cmd, signature} | {cid,
    /// missing: true}], invoker}`, root first, as the invocation's `prf` lists them.
    pub fn to_json(&self) -> Value {
        let by_cid: HashMap<Cid, &TokenView> = self
            .tokens
            .iter()
            .filter_map(|t| t.as_ref().ok())
            .map(|t| (t.cid, t))
            .collect();
        let chains: Vec<Value> = self
            .tokens
            .iter()
            .filter_map(|t| t.as_ref().ok())
            .filter(|t| t.kind != "delegation")
            .map(|inv| {
                let links: Vec<Value> = inv
                    .prf
                    .iter()
                    .map(|cid| match by_cid.get(cid) {
                        Some(d) => json!({
                            "cid": cid.to_string(),
                            "iss": d.iss,
                            "aud": d.aud,
                            "sub": d.sub,
                            "cmd": d.cmd,
                            "signature": d.signature,
                        }),
                        None => json!({ "cid": cid.to_string(), "missing": true }),
                    })
                    .collect();
                json!({
                    "invocation": inv.cid.to_string(),
                    "kind": inv.kind,
                    "invoker": inv.iss,
                    "subject": inv.sub,
                    "cmd": inv.cmd,
                    "signature": inv.signature,
                    "links": links,
                })
            })
            .collect();
        json!({
            "tokens": self.tokens.iter().map(Inspection::token_json).collect::<Vec<_>>(),
            "chains": chains,
            "valid": self.all_valid(),
        })
    }
}

fn text(map: &std::collections::BTreeMap<String, Ipld>, key: &str) -> Option<String> {
    match map.get(key) {
        Some(Ipld::String(s)) => Some(s.clone()),
        _ => None,
    }
}

/// One token read, its signature checked against its own issuer.
fn view(token: &[u8]) -> Result<TokenView, String> {
    let envelope = Envelope::decode(token).map_err(|e| e.to_string())?;
    let empty = std::collections::BTreeMap::new();
    let map = match &envelope.payload {
        Ipld::Map(map) => map,
        _ => &empty,
    };
    let iss = text(map, "iss");
    let signature = match iss.as_deref().map(PublicKey::from_did) {
        Some(Ok(key)) => match envelope.verify(&key) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("invalid: {e}"),
        },
        Some(Err(e)) => format!("unverifiable: {e}"),
        None => "unverifiable: no issuer".to_owned(),
    };
    let prf = match map.get("prf") {
        Some(Ipld::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Ipld::Link(cid) => Some(*cid),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let payload_json = to_dag_json(&envelope.payload).map_err(|e| e.to_string())?;
    let payload: Value = serde_json::from_str(&payload_json).map_err(|e| e.to_string())?;
    let mut view = TokenView {
        kind: match envelope.kind {
            Kind::Delegation => "delegation",
            Kind::Invocation => "invocation",
        },
        cid: envelope.cid,
        tag: envelope.tag.clone(),
        alg: format!("{:?}", envelope.header.alg),
        signature,
        payload,
        aud: text(map, "aud"),
        sub: text(map, "sub"),
        cmd: text(map, "cmd"),
        iss,
        prf,
    };
    // A receipt is an invocation of /ucan/assert; name it as such when it reads as one.
    if envelope.kind == Kind::Invocation
        && Invocation::from_envelope(envelope)
            .and_then(Receipt::from_invocation)
            .is_ok()
    {
        view.kind = "receipt";
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::did::{KeyAlg, SigningKey};
    use crate::ucan::Command;
    use crate::ucan::container::Format;
    use crate::ucan::delegation::DelegationBuilder;
    use crate::ucan::invocation::InvocationBuilder;

    #[test]
    fn a_container_shows_its_chain_root_first_and_names_missing_links() {
        let root = SigningKey::generate(KeyAlg::Ed25519);
        let app = SigningKey::generate(KeyAlg::P256);
        let friend = SigningKey::generate(KeyAlg::Ed25519);
        let cmd = Command::parse("/wasm/run").unwrap();
        let d1 = DelegationBuilder::new(app.did(), Some(root.did()), cmd.clone())
            .sign(&root)
            .unwrap();
        let d2 = DelegationBuilder::new(friend.did(), Some(root.did()), cmd.clone())
            .sign(&app)
            .unwrap();
        let inv = InvocationBuilder::new(root.did(), cmd, Default::default())
            .proofs(vec![d1.cid(), d2.cid()])
            .sign(&friend)
            .unwrap();
        let both = Container {
            tokens: vec![
                d2.bytes().to_vec(),
                inv.bytes().to_vec(),
                d1.bytes().to_vec(),
            ],
        };
        for format in Format::ALL {
            let seen = Inspection::of(&both.encode(format)).unwrap();
            assert!(seen.all_valid());
            let json = seen.to_json();
            assert_eq!(json["tokens"].as_array().unwrap().len(), 3);
            let chain = &json["chains"][0];
            assert_eq!(chain["invocation"], inv.cid().to_string());
            assert_eq!(chain["invoker"], friend.did());
            assert_eq!(chain["links"][0]["iss"], root.did());
            assert_eq!(chain["links"][1]["aud"], friend.did());
        }

        let partial = Container {
            tokens: vec![inv.bytes().to_vec(), d2.bytes().to_vec()],
        };
        let json = Inspection::of(&partial.encode(Format::Raw))
            .unwrap()
            .to_json();
        assert_eq!(json["chains"][0]["links"][0]["missing"], true);
        assert_eq!(json["chains"][0]["links"][0]["cid"], d1.cid().to_string());
    }

    #[test]
    fn a_bad_signature_and_garbage_are_shown_not_hidden() {
        let key = SigningKey::generate(KeyAlg::Ed25519);
        let dlg = DelegationBuilder::new(key.did(), None, Command::parse("/").unwrap())
            .sign(&key)
            .unwrap();
        let mut bytes = dlg.bytes().to_vec();
        // [0x82, 0x58, 0x40, signature…]: the first byte of an Ed25519 signature.
        assert_eq!(&bytes[..3], &[0x82, 0x58, 0x40]);
        bytes[3] ^= 1;
        let seen = Inspection::of(&bytes).unwrap();
        assert!(!seen.all_valid());
        let token = Inspection::token_json(&seen.tokens[0]);
        assert!(
            token["signature"].as_str().unwrap().starts_with("invalid"),
            "{token}"
        );
        let garbage = Inspection::of(&[0x82, 0x01, 0x02]).unwrap();
        assert!(!garbage.all_valid());
        assert_eq!(Inspection::token_json(&garbage.tokens[0])["bytes"], 3);
        assert!(Inspection::of(b"not a container").is_err());
    }
}
