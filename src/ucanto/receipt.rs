//! Receipts in the ucanto form: a DAG-CBOR block `{ocm: {ran, out, fx: {fork, join?}, meta, iss, prf},
//! sig}` where `sig` is the gateway's signature over the DAG-CBOR of `ocm`, in the `@ipld/dag-ucan`
//! signature encoding. `@ucanto/core`'s `Receipt.verifySignature` checks exactly that.
//!
//! The canonical record of a run stays the UCAN 1.0 receipt in the store; this form is built from the
//! same [`ReceiptBody`](crate::receipt::ReceiptBody) parts to answer a ucanto client.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::token::{TokenError, encode_signature};
use crate::did::{PublicKey, SigningKey};
use crate::ipld::{dag_cbor_cid, to_dag_cbor};
use crate::receipt::Out;

/// A signed ucanto receipt block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UcantoReceipt {
    /// The receipt block's CID.
    pub cid: Cid,
    /// The receipt block.
    pub bytes: Vec<u8>,
}

/// What a ucanto receipt says.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptContent<'a> {
    /// The invocation answered.
    pub ran: Cid,
    /// Its result (`{ok}` or `{error: {name, message, …}}`).
    pub out: &'a Out,
    /// Invocations the receipt asks to run next (ucanto invocation blocks' CIDs).
    pub fork: Vec<Cid>,
    /// The one to run after all others.
    pub join: Option<Cid>,
    /// Metadata.
    pub meta: BTreeMap<String, Ipld>,
}

impl UcantoReceipt {
    /// Signs `outcome` with `key`.
    pub fn issue(
        outcome: &ReceiptContent<'_>,
        key: &SigningKey,
    ) -> Result<UcantoReceipt, TokenError> {
        let mut fx = BTreeMap::from([(
            "fork".to_owned(),
            Ipld::List(outcome.fork.iter().map(|c| Ipld::Link(*c)).collect()),
        )]);
        if let Some(join) = outcome.join {
            fx.insert("join".to_owned(), Ipld::Link(join));
        }
        let ocm = Ipld::Map(BTreeMap::from([
            ("ran".to_owned(), Ipld::Link(outcome.ran)),
            ("out".to_owned(), outcome.out.to_ipld()),
            ("fx".to_owned(), Ipld::Map(fx)),
            ("meta".to_owned(), Ipld::Map(outcome.meta.clone())),
            ("iss".to_owned(), Ipld::String(key.did())),
            ("prf".to_owned(), Ipld::List(Vec::new())),
        ]));
        let signed = to_dag_cbor(&ocm).map_err(TokenError::Malformed)?;
        let sig = encode_signature(key.alg(), &key.sign(&signed));
        let root = Ipld::Map(BTreeMap::from([
            ("ocm".to_owned(), ocm),
            ("sig".to_owned(), Ipld::Bytes(sig)),
        ]));
        let bytes = to_dag_cbor(&root).map_err(TokenError::Malformed)?;
        Ok(UcantoReceipt {
            cid: dag_cbor_cid(&bytes),
            bytes,
        })
    }

    /// Checks the signature against `issuer` and gives the `ocm` map (for tests and tools).
    pub fn verify(bytes: &[u8], issuer: &str) -> Result<BTreeMap<String, Ipld>, TokenError> {
        let bad = |m: &str| TokenError::Malformed(format!("receipt: {m}"));
        let Ipld::Map(mut root) =
            crate::ipld::from_dag_cbor_strict(bytes).map_err(|e| bad_owned(e.into()))?
        else {
            return Err(bad("not a map"));
        };
        let (Some(Ipld::Map(ocm)), Some(Ipld::Bytes(sig))) =
            (root.remove("ocm"), root.remove("sig"))
        else {
            return Err(bad("expected {ocm, sig}"));
        };
        let signed = to_dag_cbor(&Ipld::Map(ocm.clone())).map_err(TokenError::Malformed)?;
        let key = PublicKey::from_did(issuer).map_err(|e| bad_owned(e.to_string()))?;
        let (code, rest) = unsigned_varint::decode::u64(&sig).map_err(|_| bad("signature"))?;
        let (_, raw) = unsigned_varint::decode::usize(rest).map_err(|_| bad("signature"))?;
        if encode_signature(key.alg(), raw) != sig || code == 0 {
            return Err(TokenError::UnsupportedSignature(
                "receipt signature code".into(),
            ));
        }
        key.verify(&signed, raw)
            .map_err(|_| TokenError::InvalidSignature(issuer.to_owned()))?;
        Ok(ocm)
    }
}

fn bad_owned(message: String) -> TokenError {
    TokenError::Malformed(format!("receipt: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::did::KeyAlg;

    #[test]
    fn a_receipt_verifies_and_a_tampered_one_does_not() {
        let key = SigningKey::generate(KeyAlg::Ed25519);
        let ran = dag_cbor_cid(b"x");
        let out = Out::Ok(Ipld::Integer(3));
        let receipt = UcantoReceipt::issue(
            &ReceiptContent {
                ran,
                out: &out,
                fork: vec![],
                join: None,
                meta: BTreeMap::new(),
            },
            &key,
        )
        .unwrap();
        let ocm = UcantoReceipt::verify(&receipt.bytes, &key.did()).unwrap();
        assert_eq!(ocm.get("ran"), Some(&Ipld::Link(ran)));
        assert_eq!(ocm.get("iss"), Some(&Ipld::String(key.did())));

        let other = SigningKey::generate(KeyAlg::P256);
        assert!(matches!(
            UcantoReceipt::verify(&receipt.bytes, &other.did()),
            Err(TokenError::UnsupportedSignature(_))
        ));
        let imposter = SigningKey::generate(KeyAlg::Ed25519);
        assert!(matches!(
            UcantoReceipt::verify(&receipt.bytes, &imposter.did()),
            Err(TokenError::InvalidSignature(_))
        ));
    }
}
