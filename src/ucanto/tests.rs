//! Unit tests of the ucanto module.
//!
//! Fixtures in `tests/ucanto/fixtures/` are request messages made by the real `@ucanto/core`,
//! `@ucanto/transport` and `@ipld/dag-ucan` packages (`tests/ucanto/fixtures.mjs`; `expected.json`
//! holds what those packages say about them). Chain semantics are tested with tokens issued here,
//! since the rules are ours to get right case by case.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::capability::{Context, check, derives};
use super::token::{Capability, TokenError, Ucan, UcanFields};
use super::{Message, to_gateway};
use crate::did::{KeyAlg, SigningKey};
use crate::task::{EffectClass, Task};
use crate::ucan::command::Command;
use crate::ucan::invocation::InvocationBuilder;
use crate::ucan::validate::{NoCache, NoRevocations, Options, Revocations};

const ED25519: &[u8] = include_bytes!("../../tests/ucanto/fixtures/ed25519.car");
const P256: &[u8] = include_bytes!("../../tests/ucanto/fixtures/p256.car");
const JWT: &[u8] = include_bytes!("../../tests/ucanto/fixtures/jwt.car");
const CAVEATS: &[u8] = include_bytes!("../../tests/ucanto/fixtures/caveats.car");
const EXPECTED: &str = include_str!("../../tests/ucanto/fixtures/expected.json");
/// A time inside every fixture's validity (they expire in 2100).
const NOW: i64 = 1_800_000_000;

fn expected() -> serde_json::Value {
    serde_json::from_str(EXPECTED).unwrap()
}

fn cx<'a>(audience: &'a str, revoked: &'a dyn Revocations) -> Context<'a> {
    Context {
        audience,
        now: NOW,
        leeway: 60,
        revoked,
        verified: &NoCache,
        trusted: &|_| false,
    }
}

#[test]
fn decodes_and_verifies_an_ed25519_message_from_ucanto() {
    let want = expected();
    let message = Message::decode(ED25519).unwrap();
    let [inv] = message.invocations.as_slice() else {
        panic!("one invocation expected")
    };
    assert_eq!(inv.cid.to_string(), want["cases"]["ed25519"]["invocation"]);
    assert_eq!(inv.iss, want["app"]);
    assert_eq!(inv.aud, want["gateway"]);
    assert_eq!(inv.exp, Some(4_102_444_800));
    assert_eq!(inv.nnc.as_deref(), Some("n1"));
    assert_eq!(inv.att[0].can, "wasm/run");
    assert_eq!(inv.att[0].with, want["operator"]);
    assert_eq!(inv.att[0].nb["func"], Ipld::String("add".into()));
    assert!(matches!(inv.att[0].nb["module"], Ipld::Bytes(_)));
    inv.verify().unwrap();

    let proof_cid: Cid = want["cases"]["ed25519"]["proof"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(inv.prf, vec![proof_cid]);
    let proof = message.tokens[&proof_cid].as_ref().unwrap();
    assert_eq!(proof.exp, None, "`expiration: Infinity` is exp: null");
    assert_eq!(proof.att[0].can, "wasm/*");
    proof.verify().unwrap();

    // The whole chain, then the mapping onto the gateway's task.
    let checked = check(
        inv,
        &message.tokens,
        &cx(want["gateway"].as_str().unwrap(), &NoRevocations),
    )
    .unwrap();
    assert_eq!(checked.chain, vec![proof_cid]);
    assert_eq!(checked.expires, Some(4_102_444_800));
    let (payload, auth) = to_gateway(inv, &checked).unwrap();
    assert_eq!(payload.cmd.as_str(), "/wasm/run");
    assert_eq!(auth.subject, want["operator"]);
    assert_eq!(auth.args, inv.att[0].nb);
    assert_eq!(payload.nonce, b"n1");
    let task = Task::new(&auth, &payload, EffectClass::Pure).unwrap();
    assert_eq!(
        task.config.fuel,
        Some(1000),
        "ipvm/config travels as a fact"
    );
}

#[test]
fn a_changed_field_breaks_the_signature() {
    let message = Message::decode(ED25519).unwrap();
    let inv = &message.invocations[0];
    let Ipld::Map(mut map) = crate::ipld::from_dag_cbor_strict(&message.blocks[&inv.cid]).unwrap()
    else {
        panic!()
    };
    map.insert("nnc".into(), Ipld::String("n2".into()));
    let bytes = crate::ipld::to_dag_cbor(&Ipld::Map(map)).unwrap();
    let forged = Ucan::decode(crate::ipld::dag_cbor_cid(&bytes), &bytes).unwrap();
    assert!(matches!(
        forged.verify(),
        Err(TokenError::InvalidSignature(_))
    ));
}

#[test]
fn verifies_p256_webcrypto_signatures() {
    let want = expected();
    let message = Message::decode(P256).unwrap();
    let inv = &message.invocations[0];
    assert_eq!(inv.iss, want["cases"]["p256"]["issuer"]);
    inv.verify().unwrap();
    check(
        inv,
        &message.tokens,
        &cx(want["gateway"].as_str().unwrap(), &NoRevocations),
    )
    .unwrap();
}

#[test]
fn reads_a_proof_in_the_jwt_form() {
    let want = expected();
    let message = Message::decode(JWT).unwrap();
    let proof_cid: Cid = want["cases"]["jwt"]["proof"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(proof_cid.codec(), crate::ipld::RAW);
    let proof = message.tokens[&proof_cid].as_ref().unwrap();
    assert_eq!(proof.iss, want["operator"]);
    assert_eq!(proof.att[0].nb["func"], Ipld::String("add".into()));
    proof.verify().unwrap();
    let text = std::str::from_utf8(&message.blocks[&proof_cid]).unwrap();
    assert!(text.starts_with(std::str::from_utf8(proof.signing_input()).unwrap()));
    check(
        &message.invocations[0],
        &message.tokens,
        &cx(want["gateway"].as_str().unwrap(), &NoRevocations),
    )
    .unwrap();
}

#[test]
fn verifies_caveats_of_every_value_kind() {
    let want = expected();
    let message = Message::decode(CAVEATS).unwrap();
    let inv = &message.invocations[0];
    assert_eq!(inv.cid.to_string(), want["cases"]["caveats"]["invocation"]);
    // The signature covers the DAG-JSON of these values exactly as @ipld/dag-json wrote it.
    inv.verify().unwrap();
    let nb = &inv.att[0].nb;
    assert_eq!(
        nb["text"],
        Ipld::String("héllo ✓ \"q\" / \\ \n\t</script> \u{2028}".into())
    );
    assert_eq!(nb["bytes"], Ipld::Bytes(vec![0, 1, 254, 255]));
    assert!(matches!(nb["link"], Ipld::Link(_)));
    assert_eq!(nb["nothing"], Ipld::Null);
    let Ipld::List(floats) = &nb["floats"] else {
        panic!("floats")
    };
    assert_eq!(floats[0], Ipld::Float(1.5));
    assert_eq!(floats[2], Ipld::Float(1e21));
    assert_eq!(floats[5], Ipld::Float(5e-324));
    let Ipld::List(ints) = &nb["ints"] else {
        panic!("ints")
    };
    assert_eq!(ints[2], Ipld::Integer(9_007_199_254_740_991));
    check(
        inv,
        &message.tokens,
        &cx(want["gateway"].as_str().unwrap(), &NoRevocations),
    )
    .unwrap();
}

#[test]
fn a_report_keeps_the_first_receipt_of_an_invocation_sent_twice() {
    let ran = crate::ipld::dag_cbor_cid(b"invocation");
    let (first, second) = (
        crate::ipld::dag_cbor_cid(b"first"),
        crate::ipld::dag_cbor_cid(b"second"),
    );
    let entry = |receipt: Cid| super::ReportEntry {
        ran,
        receipt,
        blocks: vec![],
    };
    let car =
        super::car::Car::decode(&super::encode_report(&[entry(first), entry(second)])).unwrap();
    let root = crate::ipld::from_dag_cbor_strict(&car.blocks[&car.root.unwrap()]).unwrap();
    let Ipld::Map(root) = root else { panic!() };
    let Some(Ipld::Map(message)) = root.get(super::MESSAGE_TAG) else {
        panic!()
    };
    let Some(Ipld::Map(report)) = message.get("report") else {
        panic!()
    };
    assert_eq!(report.get(&ran.to_string()), Some(&Ipld::Link(first)));
}

#[test]
fn refuses_malformed_messages() {
    assert!(Message::decode(b"not a car").is_err());
    // A CAR whose root is not a ucanto message.
    let bytes = crate::ipld::to_dag_cbor(&Ipld::String("hello".into())).unwrap();
    let cid = crate::ipld::dag_cbor_cid(&bytes);
    let car = super::car::Car::encode(cid, &[(cid, bytes)]);
    assert!(matches!(
        Message::decode(&car),
        Err(super::MessageError::Shape(_))
    ));
}

/// A small world of keys issuing tokens here.
struct World {
    owner: Rc<SigningKey>,
    app: Rc<SigningKey>,
    user: Rc<SigningKey>,
    gateway: String,
    tokens: HashMap<Cid, Result<Ucan, TokenError>>,
}

impl World {
    fn new() -> Self {
        World {
            owner: Rc::new(SigningKey::generate(KeyAlg::Ed25519)),
            app: Rc::new(SigningKey::generate(KeyAlg::P256)),
            user: Rc::new(SigningKey::generate(KeyAlg::Ed25519)),
            gateway: SigningKey::generate(KeyAlg::Ed25519).did(),
            tokens: HashMap::new(),
        }
    }

    fn cap(&self, can: &str, nb: &[(&str, Ipld)]) -> Capability {
        Capability {
            with: self.owner.did(),
            can: can.into(),
            nb: nb
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    fn issue(&mut self, by: &SigningKey, fields: UcanFields) -> Ucan {
        let (cid, bytes) = Ucan::issue(&fields, by).unwrap();
        let ucan = Ucan::decode(cid, &bytes).unwrap();
        self.tokens.insert(cid, Ok(ucan.clone()));
        ucan
    }

    fn delegate(
        &mut self,
        by: &SigningKey,
        to: &SigningKey,
        cap: Capability,
        prf: Vec<Cid>,
    ) -> Cid {
        let fields = UcanFields {
            aud: to.did(),
            att: vec![cap],
            exp: Some(NOW + 3600),
            prf,
            ..UcanFields::default()
        };
        self.issue(by, fields).cid
    }

    fn invoke(&mut self, by: &SigningKey, cap: Capability, prf: Vec<Cid>) -> Ucan {
        let fields = UcanFields {
            aud: self.gateway.clone(),
            att: vec![cap],
            exp: Some(NOW + 60),
            prf,
            ..UcanFields::default()
        };
        self.issue(by, fields)
    }

    fn check(&self, inv: &Ucan) -> Result<super::capability::Checked, super::capability::Denied> {
        check(inv, &self.tokens, &cx(&self.gateway, &NoRevocations))
    }
}

fn s(text: &str) -> Ipld {
    Ipld::String(text.into())
}

#[test]
fn a_two_link_chain_with_caveats_is_checked_on_every_link() {
    let mut w = World::new();
    let (owner, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let root = w.delegate(&owner, &app, w.cap("wasm/*", &[("func", s("add"))]), vec![]);
    let leaf = w.delegate(&app, &user, w.cap("wasm/run", &[]), vec![root]);

    let ok = w.invoke(
        &user,
        w.cap("wasm/run", &[("func", s("add")), ("x", s("1"))]),
        vec![leaf],
    );
    let checked = w.check(&ok).unwrap();
    assert_eq!(checked.chain, vec![root, leaf], "root first");

    // The leaf lets any func through, the root does not.
    let outside = w.invoke(&user, w.cap("wasm/run", &[("func", s("spin"))]), vec![leaf]);
    let denied = w.check(&outside).unwrap_err();
    assert_eq!(denied.name, "Unauthorized");
    assert!(
        denied.message.contains("Constraint violation"),
        "{}",
        denied.message
    );
}

#[test]
fn self_issued_needs_no_proof_and_others_do() {
    let mut w = World::new();
    let (owner, user) = (w.owner.clone(), w.user.clone());
    let own = w.invoke(&owner, w.cap("wasm/run", &[]), vec![]);
    assert!(w.check(&own).unwrap().chain.is_empty());
    let stranger = w.invoke(&user, w.cap("wasm/run", &[]), vec![]);
    let denied = w.check(&stranger).unwrap_err();
    assert_eq!(denied.name, "Unauthorized");
    assert!(denied.message.contains("No matching delegated capability"));
}

#[test]
fn a_root_not_issued_by_the_resource_owner_proves_nothing() {
    let mut w = World::new();
    let (app, user) = (w.app.clone(), w.user.clone());
    let fake_root = w.delegate(&app, &user, w.cap("wasm/run", &[]), vec![]);
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![fake_root]);
    assert_eq!(w.check(&inv).unwrap_err().name, "Unauthorized");
}

#[test]
fn expired_and_premature_proofs_and_invocations_are_refused() {
    let mut w = World::new();
    let (owner, user) = (w.owner.clone(), w.user.clone());
    let expired = w.issue(
        &owner,
        UcanFields {
            aud: user.did(),
            att: vec![w.cap("wasm/run", &[])],
            exp: Some(NOW - 3600),
            ..UcanFields::default()
        },
    );
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![expired.cid]);
    let denied = w.check(&inv).unwrap_err();
    assert_eq!(denied.name, "Unauthorized");
    assert!(denied.message.contains("has expired"), "{}", denied.message);

    let early = w.issue(
        &owner,
        UcanFields {
            aud: user.did(),
            att: vec![w.cap("wasm/run", &[])],
            exp: None,
            nbf: Some(NOW + 3600),
            ..UcanFields::default()
        },
    );
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![early.cid]);
    assert!(
        w.check(&inv)
            .unwrap_err()
            .message
            .contains("not valid before")
    );

    let stale = w.issue(
        &user,
        UcanFields {
            aud: w.gateway.clone(),
            att: vec![w.cap("wasm/run", &[])],
            exp: Some(NOW - 3600),
            ..UcanFields::default()
        },
    );
    let denied = w.check(&stale).unwrap_err();
    assert_eq!(denied.name, "Unauthorized");
    assert!(
        denied
            .message
            .contains(&format!("Proof {} has expired", stale.cid))
    );
}

#[test]
fn audience_proof_addressing_revocation_and_missing_proofs() {
    let mut w = World::new();
    let (owner, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let to_app = w.delegate(&owner, &app, w.cap("wasm/run", &[]), vec![]);
    // Addressed to the app, used by the user.
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![to_app]);
    assert!(
        w.check(&inv)
            .unwrap_err()
            .message
            .contains("Delegation audience")
    );

    let to_user = w.delegate(&owner, &user, w.cap("wasm/run", &[]), vec![]);
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![to_user]);
    w.check(&inv).unwrap();
    let revoked: HashSet<Cid> = HashSet::from([to_user]);
    let denied = check(&inv, &w.tokens, &cx(&w.gateway, &revoked)).unwrap_err();
    assert!(denied.message.contains("revoked"));
    let denied = check(&inv, &w.tokens, &cx("did:key:z6Mkother", &NoRevocations)).unwrap_err();
    assert_eq!(denied.name, "InvalidAudience");

    let missing = crate::ipld::dag_cbor_cid(b"nothing");
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![missing]);
    assert!(
        w.check(&inv)
            .unwrap_err()
            .message
            .contains("is not included")
    );
}

#[test]
fn an_invocation_carries_one_concrete_capability() {
    let mut w = World::new();
    let owner = w.owner.clone();
    let two = w.issue(
        &owner,
        UcanFields {
            aud: w.gateway.clone(),
            att: vec![w.cap("wasm/run", &[]), w.cap("blob/put", &[])],
            exp: Some(NOW + 60),
            ..UcanFields::default()
        },
    );
    assert_eq!(w.check(&two).unwrap_err().name, "InvocationCapabilityError");
    let wild = w.invoke(&owner, w.cap("wasm/*", &[]), vec![]);
    assert_eq!(w.check(&wild).unwrap_err().name, "MalformedCapability");
}

#[test]
fn derives_follows_the_ucanto_rules() {
    let did = "did:key:z6Mkabc".to_owned();
    let cap = |with: &str, can: &str, nb: &[(&str, Ipld)]| Capability {
        with: with.into(),
        can: can.into(),
        nb: nb
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    };
    let claim = cap(
        &did,
        "wasm/run",
        &[("func", s("add")), ("n", Ipld::Integer(1))],
    );
    for ok in [
        cap(&did, "wasm/run", &[]),
        cap(&did, "wasm/*", &[("func", s("add"))]),
        cap(&did, "*", &[("n", Ipld::Integer(1))]),
        cap("ucan:*", "wasm/run", &[]),
        cap("did:key:z6M*", "wasm/run", &[]),
    ] {
        assert!(derives(&claim, &ok).is_ok(), "{ok:?}");
    }
    for bad in [
        cap(&did, "wasm/other", &[]),
        cap(&did, "blob/*", &[]),
        cap(&did, "was*", &[]),
        cap("did:key:z6Mkother", "wasm/run", &[]),
        cap(&did, "wasm/run", &[("func", s("spin"))]),
        cap(&did, "wasm/run", &[("missing", s("x"))]),
        cap(&did, "wasm/run", &[("n", s("1"))]),
    ] {
        assert!(derives(&claim, &bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_same_work_has_the_same_work_id_over_both_wire_formats() {
    let mut w = World::new();
    let owner = w.owner.clone();
    let nb = [
        ("func", s("add")),
        ("module", Ipld::Bytes(vec![0, 97, 115, 109])),
    ];
    let inv = w.invoke(&owner, w.cap("wasm/run", &nb), vec![]);
    let checked = w.check(&inv).unwrap();
    let (payload, auth) = to_gateway(&inv, &checked).unwrap();
    let ucanto = Task::new(&auth, &payload, EffectClass::Pure).unwrap();

    let args: BTreeMap<String, Ipld> = nb
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let native = InvocationBuilder::new(owner.did(), Command::parse("/wasm/run").unwrap(), args)
        .nonce(b"other".to_vec())
        .expires(Some(NOW + 60))
        .sign(&owner)
        .unwrap();
    let auth = crate::ucan::validate::validate(
        &native,
        &HashMap::new(),
        Options::at(NOW),
        &NoRevocations,
        &NoCache,
    )
    .unwrap();
    let native = Task::new(&auth, &native.payload, EffectClass::Pure).unwrap();
    assert_eq!(ucanto.work_id, native.work_id);
    assert_ne!(ucanto.id, native.id, "different nonces, different tasks");
}

#[test]
fn a_delegation_is_revoked_by_an_issuer_on_its_path_only() {
    use super::revoke::target;
    let mut w = World::new();
    let (owner, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let root = w.delegate(&owner, &app, w.cap("wasm/run", &[]), vec![]);
    let leaf = w.delegate(&app, &user, w.cap("wasm/run", &[]), vec![root]);
    let revoke = |w: &mut World, by: &SigningKey, what: Cid| {
        let fields = UcanFields {
            aud: w.gateway.clone(),
            att: vec![Capability {
                with: by.did(),
                can: "ucan/revoke".into(),
                nb: BTreeMap::from([("ucan".to_owned(), Ipld::Link(what))]),
            }],
            exp: Some(NOW + 60),
            ..UcanFields::default()
        };
        let inv = w.issue(by, fields);
        let checked = w.check(&inv).unwrap();
        target(&inv, &checked, &w.tokens)
    };
    // Its issuer, and the issuer of a delegation upstream of it.
    assert_eq!(revoke(&mut w, &app, leaf), Ok(leaf));
    assert_eq!(revoke(&mut w, &owner, leaf), Ok(leaf));
    // Its audience is downstream, a stranger is nowhere on the path.
    assert_eq!(
        revoke(&mut w, &user, leaf).unwrap_err().name,
        "Unauthorized"
    );
    let stranger = SigningKey::generate(KeyAlg::Ed25519);
    assert_eq!(
        revoke(&mut w, &stranger, leaf).unwrap_err().name,
        "Unauthorized"
    );
    // The delegation must come with the request.
    let unknown = crate::ipld::dag_cbor_cid(b"elsewhere");
    assert_eq!(
        revoke(&mut w, &app, unknown).unwrap_err().name,
        "UnavailableProof"
    );
}

proptest::proptest! {
    /// Damaged messages are refused with an error, never a panic: single-byte changes and cuts of a
    /// real message, and arbitrary bytes.
    #[test]
    fn damaged_messages_never_panic(at in 0usize..ED25519.len(), byte in proptest::prelude::any::<u8>(), cut in 0usize..ED25519.len(), noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let mut changed = ED25519.to_vec();
        changed[at] = byte;
        if let Ok(message) = Message::decode(&changed) {
            for inv in &message.invocations {
                let _ = check(inv, &message.tokens, &cx("did:key:z6Mkx", &NoRevocations));
            }
        }
        let _ = Message::decode(&ED25519[..cut]);
        let _ = Message::decode(&noise);
        let _ = Ucan::decode(crate::ipld::dag_cbor_cid(&noise), &noise);
        let _ = Ucan::decode(Cid::new_v1(crate::ipld::RAW, *crate::ipld::dag_cbor_cid(&noise).hash()), &noise);
    }
}

/// A token with `fields`, signed by `signer` but naming `claimed` as its issuer.
fn forged(fields: &UcanFields, signer: &SigningKey, claimed: &SigningKey) -> (Cid, Vec<u8>) {
    let map_of = |key: &SigningKey| match crate::ipld::from_dag_cbor_strict(
        &Ucan::issue(fields, key).unwrap().1,
    ) {
        Ok(Ipld::Map(map)) => map,
        _ => panic!("a token is a map"),
    };
    let mut map = map_of(signer);
    map.insert("iss".into(), map_of(claimed)["iss"].clone());
    let bytes = crate::ipld::to_dag_cbor(&Ipld::Map(map)).unwrap();
    (crate::ipld::dag_cbor_cid(&bytes), bytes)
}

/// A delegation of `wasm/run` to `to`, signed by `signer` but naming `claimed` as its issuer.
fn forge(w: &mut World, signer: &SigningKey, claimed: &SigningKey, to: &SigningKey) -> Cid {
    let fields = UcanFields {
        aud: to.did(),
        att: vec![w.cap("wasm/run", &[])],
        exp: Some(NOW + 3600),
        ..UcanFields::default()
    };
    let (cid, bytes) = forged(&fields, signer, claimed);
    w.tokens.insert(cid, Ucan::decode(cid, &bytes));
    cid
}

#[test]
fn a_forged_proof_is_reported_once_however_often_it_is_cited() {
    let mut w = World::new();
    let (owner, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let forged = forge(&mut w, &app, &owner, &user);
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![forged, forged, forged]);
    let denied = w.check(&inv).unwrap_err();
    assert_eq!(
        denied.message.matches("valid signature").count(),
        1,
        "{}",
        denied.message
    );
    // A genuine proof next to it still proves the claim.
    let genuine = w.delegate(&owner, &user, w.cap("wasm/run", &[]), vec![]);
    let inv = w.invoke(&user, w.cap("wasm/run", &[]), vec![forged, genuine]);
    assert_eq!(w.check(&inv).unwrap().chain, vec![genuine]);
}

#[test]
fn an_invocation_with_a_bad_signature_is_unauthorized() {
    let mut w = World::new();
    let (owner, user) = (w.owner.clone(), w.user.clone());
    // Claims to be the owner's own (self-issued) invocation, but the user signed it.
    let fields = UcanFields {
        aud: w.gateway.clone(),
        att: vec![w.cap("wasm/run", &[])],
        exp: Some(NOW + 60),
        ..UcanFields::default()
    };
    let (cid, bytes) = forged(&fields, &user, &owner);
    let forged = Ucan::decode(cid, &bytes).unwrap();
    assert_eq!(forged.iss, owner.did());
    let denied = w.check(&forged).unwrap_err();
    assert_eq!(denied.name, "Unauthorized");
    assert!(
        denied.message.contains("does not have a valid signature"),
        "{}",
        denied.message
    );
    // Signed by the owner, the same fields pass.
    let own = w.issue(&owner, fields);
    w.check(&own).unwrap();
}

#[test]
fn an_effect_signed_by_this_gateway_is_never_a_delegation() {
    let mut w = World::new();
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    w.gateway = gateway.did();
    let user = w.user.clone();
    let own = |fct: Vec<Ipld>| UcanFields {
        aud: user.did(),
        att: vec![Capability {
            with: gateway.did(),
            can: "wasm/run".into(),
            nb: BTreeMap::new(),
        }],
        exp: Some(NOW + 60),
        fct,
        ..UcanFields::default()
    };
    let mark = Ipld::Map(BTreeMap::from([(
        super::capability::EFFECT_FACT.to_owned(),
        Ipld::Link(crate::ipld::dag_cbor_cid(b"receipt")),
    )]));
    let claim = Capability {
        with: gateway.did(),
        can: "wasm/run".into(),
        nb: BTreeMap::new(),
    };
    // A delegation of the gateway's own authority, signed with its key, is a delegation…
    let delegation = w.issue(&gateway, own(vec![])).cid;
    let inv = w.invoke(&user, claim.clone(), vec![delegation]);
    w.check(&inv).unwrap();
    // …but a token it issued as an effect is not, though it has the same shape.
    let effect = w.issue(&gateway, own(vec![mark])).cid;
    let inv = w.invoke(&user, claim, vec![effect]);
    let denied = w.check(&inv).unwrap_err();
    assert!(
        denied.message.contains("is an effect"),
        "{}",
        denied.message
    );
}

mod trust;
