//! Envelope decoding, signing and verification against the official fixture, hand-built
//! non-canonical inputs, and round-trip properties.
//!
//! The fixture values below are copied verbatim from the UCAN spec repository's
//! `fixtures/delegation.json` (`valid[0]`, "basic delegation bob > carol", and `principals`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ipld_core::ipld::Ipld;
use proptest::prelude::*;
use ucan_gateway::did::{KeyAlg, PublicKey, SigningKey};
use ucan_gateway::ipld::{self, MAX_DEPTH, MAX_SAFE_INTEGER};
use ucan_gateway::ucan::envelope::{
    DELEGATION_TAG, DELEGATION_TAG_RC1, Envelope, EnvelopeError, INVOCATION_TAG, Kind,
};
use ucan_gateway::ucan::varsig::Header;

const FIXTURE_TOKEN: &str = "glhAjm4YpBUWgEVmBWSotkY7bjWxj9AJLs9NfQykfoF2LhKZ76lQH0B720Qq0/YxNu+dKuQLEzlfJvmYRnZGgI7dA6JhaEg0Ae0B7QETcW51Y2FuL2RsZ0AxLjAuMKdjYXVkeDhkaWQ6a2V5Ono2TWttSmNlVm9RU0hzNDVjUmVFWG9MdFdtMXdvc0NHOFJMeGZLd2h4b3F6b1RrQ2NjbWRoL2FjY291bnRjZXhwGmiCDLFjaXNzeDhkaWQ6a2V5Ono2TWttVDlqNmZWWnF6WFY4dTJ3VlZTdTQ5Z1lTUllHU1FuZHVXWEY2Zm9BSnJxemNwb2yAY3N1Yng4ZGlkOmtleTp6Nk1rbVQ5ajZmVlpxelhWOHUyd1ZWU3U0OWdZU1JZR1NRbmR1V1hGNmZvQUpycXplbm9uY2VMJ20r9pHkJ/yoNirD";
const FIXTURE_CID: &str = "bafyreigyftnzjf4rcu7glp5kfop53vqlopc3zcldauoqdxqlz7t4343gr4";
const FIXTURE_SIGNATURE: &str =
    "jm4YpBUWgEVmBWSotkY7bjWxj9AJLs9NfQykfoF2LhKZ76lQH0B720Qq0/YxNu+dKuQLEzlfJvmYRnZGgI7dAw==";
const BOB_DID: &str = "did:key:z6MkmT9j6fVZqzXV8u2wVVSu49gYSRYGSQnduWXF6foAJrqz";
const CAROL_DID: &str = "did:key:z6MkmJceVoQSHs45cReEXoLtWm1wosCG8RLxfKwhxoqzoTkC";
const CAROL_KEY: &str = "gCZC43QGw7ZvYQuKTtBwBy+tdjYrKf0hXU3dd+J0HON5dw==";

const ALGS: [KeyAlg; 3] = [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1];

fn b64(text: &str) -> Vec<u8> {
    STANDARD.decode(text).unwrap()
}

fn text(s: &str) -> Ipld {
    Ipld::String(s.to_owned())
}

fn map<const N: usize>(entries: [(&str, Ipld); N]) -> Ipld {
    Ipld::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn malformed(bytes: &[u8]) -> String {
    match Envelope::decode(bytes) {
        Err(EnvelopeError::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

// --- The official fixture -------------------------------------------------------------------

#[test]
fn fixture_token_decodes_with_its_cid_and_payload() {
    let bytes = b64(FIXTURE_TOKEN);
    let env = Envelope::decode(&bytes).unwrap();
    assert_eq!(env.kind, Kind::Delegation);
    assert_eq!(env.tag, DELEGATION_TAG);
    assert_eq!(env.header, Header::for_alg(KeyAlg::Ed25519));
    assert_eq!(env.cid.to_string(), FIXTURE_CID);
    assert_eq!(env.signature, b64(FIXTURE_SIGNATURE));
    assert_eq!(env.bytes, bytes);
    let expected = map([
        ("iss", text(BOB_DID)),
        ("aud", text(CAROL_DID)),
        ("sub", text(BOB_DID)),
        ("cmd", text("/account")),
        ("pol", Ipld::List(vec![])),
        ("exp", Ipld::Integer(1753353393)),
        ("nonce", Ipld::Bytes(b64("J20r9pHkJ/yoNirD"))),
    ]);
    assert_eq!(env.payload, expected);
}

#[test]
fn fixture_token_verifies_against_its_issuer_only() {
    let env = Envelope::decode(&b64(FIXTURE_TOKEN)).unwrap();
    let Ipld::Map(payload) = &env.payload else {
        panic!("payload is a map")
    };
    let Some(Ipld::String(iss)) = payload.get("iss") else {
        panic!("iss is a string")
    };
    assert_eq!(env.verify(&PublicKey::from_did(iss).unwrap()), Ok(()));
    let carol = SigningKey::from_key_file(CAROL_KEY).unwrap().public();
    assert_eq!(env.verify(&carol), Err(EnvelopeError::InvalidSignature));
}

#[test]
fn signed_bytes_are_the_encoded_header_and_payload() {
    let env = Envelope::decode(&b64(FIXTURE_TOKEN)).unwrap();
    let signed = map([
        ("h", Ipld::Bytes(b64("NAHtAe0BE3E="))),
        (DELEGATION_TAG, env.payload.clone()),
    ]);
    let expected = ipld::to_dag_cbor(&signed).unwrap();
    assert_eq!(env.signed_bytes(), expected.as_slice());
    assert!(env.bytes.ends_with(&expected));
}

// --- Signing ----------------------------------------------------------------------------------

fn sample_payload() -> Ipld {
    map([
        ("cmd", text("/crud/read")),
        (
            "args",
            map([("n", Ipld::Integer(-7)), ("f", Ipld::Float(1.5))]),
        ),
        ("exp", Ipld::Null),
    ])
}

#[test]
fn sign_decode_verify_round_trips_for_every_alg_and_kind() {
    for alg in ALGS {
        let key = SigningKey::generate(alg);
        for (kind, tag) in [
            (Kind::Delegation, DELEGATION_TAG),
            (Kind::Invocation, INVOCATION_TAG),
        ] {
            let env = Envelope::sign(kind, sample_payload(), &key).unwrap();
            assert_eq!(env.tag, tag);
            assert_eq!(env.header, Header::for_alg(alg));
            assert_eq!(env.payload, sample_payload());
            assert_eq!(env.cid, ipld::dag_cbor_cid(&env.bytes));
            let back = Envelope::decode(&env.bytes).unwrap();
            assert_eq!(back, env);
            assert_eq!(back.signed_bytes(), env.signed_bytes());
            assert_eq!(back.verify(&key.public()), Ok(()));
        }
    }
}

#[test]
fn verify_rejects_a_key_of_another_algorithm() {
    let p256 = SigningKey::generate(KeyAlg::P256);
    let env = Envelope::sign(Kind::Invocation, sample_payload(), &p256).unwrap();
    for alg in [KeyAlg::Ed25519, KeyAlg::Secp256k1] {
        let other = SigningKey::generate(alg).public();
        assert!(
            matches!(env.verify(&other), Err(EnvelopeError::Header(_))),
            "{alg:?}"
        );
    }
    // And the fixture's Ed25519 header against a P-256 key.
    let fixture = Envelope::decode(&b64(FIXTURE_TOKEN)).unwrap();
    assert!(matches!(
        fixture.verify(&p256.public()),
        Err(EnvelopeError::Header(_))
    ));
}

#[test]
fn a_flipped_signature_byte_fails_verification() {
    for alg in ALGS {
        let key = SigningKey::generate(alg);
        let env = Envelope::sign(Kind::Delegation, sample_payload(), &key).unwrap();
        for at in [0, 31, 32, 63] {
            let mut bytes = env.bytes.clone();
            // The signature starts after the array head and the two-byte byte-string head.
            bytes[3 + at] ^= 0x01;
            let tampered = Envelope::decode(&bytes).unwrap();
            assert_eq!(
                tampered.verify(&key.public()),
                Err(EnvelopeError::InvalidSignature)
            );
        }
    }
}

#[test]
fn sign_refuses_what_decode_would_refuse() {
    let key = SigningKey::generate(KeyAlg::Ed25519);
    let refused = |payload: Ipld| match Envelope::sign(Kind::Delegation, payload, &key) {
        Err(EnvelopeError::Malformed(reason)) => reason,
        other => panic!("expected Malformed, got {other:?}"),
    };
    refused(Ipld::List(vec![]));
    refused(map([(
        "n",
        Ipld::Integer(i128::from(MAX_SAFE_INTEGER) + 1),
    )]));
    refused(map([(
        "n",
        Ipld::Integer(-i128::from(MAX_SAFE_INTEGER) - 1),
    )]));
    refused(map([("f", Ipld::Float(f64::NAN))]));
    // Too deep is a limit, refused by its own name.
    assert_eq!(
        Envelope::sign(
            Kind::Delegation,
            map([("a", nested_lists(MAX_DEPTH - 2))]),
            &key
        ),
        Err(EnvelopeError::TooDeep { max: MAX_DEPTH - 2 })
    );
    // The deepest payload sign accepts is also the deepest decode accepts.
    let env = Envelope::sign(
        Kind::Delegation,
        map([("a", nested_lists(MAX_DEPTH - 3))]),
        &key,
    )
    .unwrap();
    assert_eq!(Envelope::decode(&env.bytes).unwrap(), env);
}

fn nested_lists(levels: usize) -> Ipld {
    (0..levels).fold(Ipld::Integer(1), |inner, _| Ipld::List(vec![inner]))
}

// --- Strict decoding, on hand-written CBOR ----------------------------------------------------

const ED25519_HEADER: [u8; 8] = [0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0x71];

/// A minimal CBOR head.
fn head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => [&[m | 25][..], &(n as u16).to_be_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[m | 26][..], &(n as u32).to_be_bytes()].concat(),
        _ => [&[m | 27][..], &n.to_be_bytes()].concat(),
    }
}

fn cbor_text(s: &str) -> Vec<u8> {
    [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    [head(2, b.len() as u64), b.to_vec()].concat()
}

/// A map with entries written in the given order (so tests can break canonical order).
fn cbor_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = head(5, entries.len() as u64);
    for (k, v) in entries {
        out.extend(cbor_text(k));
        out.extend_from_slice(v);
    }
    out
}

/// `[64 zero bytes, {"h": Ed25519 header, tag: payload}]`.
fn token_with(tag: &str, payload: Vec<u8>) -> Vec<u8> {
    let signed = cbor_map(&[("h", cbor_bytes(&ED25519_HEADER)), (tag, payload)]);
    [vec![0x82], cbor_bytes(&[0; 64]), signed].concat()
}

fn token_with_value(value: Vec<u8>) -> Vec<u8> {
    token_with(DELEGATION_TAG, cbor_map(&[("exp", value)]))
}

#[test]
fn hand_built_baseline_decodes() {
    // Every rejection below differs from this token in one respect only.
    let env = Envelope::decode(&token_with_value(head(0, 5))).unwrap();
    assert_eq!(env.payload, map([("exp", Ipld::Integer(5))]));
    assert_eq!(env.kind, Kind::Delegation);
}

#[test]
fn non_canonical_encodings_are_rejected() {
    // Map keys out of order ("h" must precede the longer tag).
    let signed = cbor_map(&[
        (DELEGATION_TAG, cbor_map(&[("exp", head(0, 5))])),
        ("h", cbor_bytes(&ED25519_HEADER)),
    ]);
    malformed(&[vec![0x82], cbor_bytes(&[0; 64]), signed].concat());
    // Unsorted keys inside the payload, and a duplicate key.
    let payload = cbor_map(&[("iss", head(0, 1)), ("aud", head(0, 2))]);
    malformed(&token_with(DELEGATION_TAG, payload));
    let payload = cbor_map(&[("exp", head(0, 1)), ("exp", head(0, 2))]);
    malformed(&token_with(DELEGATION_TAG, payload));
    // 5 written with a one-byte argument.
    malformed(&token_with_value(vec![0x18, 0x05]));
    // A 16-bit float (1.0).
    malformed(&token_with_value(vec![0xf9, 0x3c, 0x00]));
    // An indefinite-length payload map and an indefinite-length string.
    let indefinite_map = [vec![0xbf], cbor_text("exp"), head(0, 5), vec![0xff]].concat();
    assert!(malformed(&token_with(DELEGATION_TAG, indefinite_map)).contains("indefinite"));
    let indefinite_text = [vec![0x7f], cbor_text("a"), vec![0xff]].concat();
    assert!(malformed(&token_with_value(indefinite_text)).contains("indefinite"));
    // A tag other than 42.
    assert!(malformed(&token_with_value([vec![0xc1], head(0, 5)].concat())).contains("tag"));
}

#[test]
fn integers_must_be_within_2_pow_53() {
    let max = MAX_SAFE_INTEGER;
    let ok = |value: Vec<u8>, expected: i128| {
        let env = Envelope::decode(&token_with_value(value)).unwrap();
        assert_eq!(env.payload, map([("exp", Ipld::Integer(expected))]));
    };
    ok(head(0, max), i128::from(max));
    // Major type 1 encodes −1 − n.
    ok(head(1, max - 1), -i128::from(max));
    assert!(malformed(&token_with_value(head(0, max + 1))).contains("integer"));
    assert!(malformed(&token_with_value(head(1, max))).contains("integer"));
    assert!(malformed(&token_with_value(head(0, u64::MAX))).contains("integer"));
    // Anywhere in the payload, not just at the top.
    let deep = [head(4, 1), head(5, 1), cbor_text("x"), head(0, max + 1)].concat();
    assert!(malformed(&token_with_value(deep)).contains("integer"));
}

#[test]
fn tags_must_be_known() {
    let payload = || cbor_map(&[("exp", head(0, 5))]);
    let rc = Envelope::decode(&token_with(DELEGATION_TAG_RC1, payload())).unwrap();
    assert_eq!(
        (rc.kind, rc.tag.as_str()),
        (Kind::Delegation, DELEGATION_TAG_RC1)
    );
    let inv = Envelope::decode(&token_with("ucan/inv@1.0.0-rc.1", payload())).unwrap();
    assert_eq!(inv.kind, Kind::Invocation);
    for tag in [
        "ucan/dlg@2.0.0",
        "ucan/rct@1.0.0",
        "ucan/dlg@1.0.0-rc.2",
        "ucan/dlg",
        "z",
    ] {
        assert!(
            malformed(&token_with(tag, payload())).contains("tag"),
            "{tag}"
        );
    }
}

#[test]
fn wrong_shapes_are_rejected() {
    let payload = cbor_map(&[("exp", head(0, 5))]);
    let sig = cbor_bytes(&[0; 64]);
    let h = cbor_bytes(&ED25519_HEADER);
    let wrap = |items: &[Vec<u8>]| [head(4, items.len() as u64), items.concat()].concat();
    // A third envelope element, a single element, a map instead of an array.
    let signed = cbor_map(&[("h", h.clone()), (DELEGATION_TAG, payload.clone())]);
    malformed(&wrap(&[sig.clone(), signed.clone(), head(7, 22)]));
    malformed(&wrap(std::slice::from_ref(&sig)));
    malformed(&cbor_map(&[("h", h.clone())]));
    // The signature as text.
    malformed(&wrap(&[cbor_text("sig"), signed.clone()]));
    // An extra key, a missing header, a header that is not bytes, a payload that is not a map.
    malformed(&wrap(&[
        sig.clone(),
        cbor_map(&[
            ("h", h.clone()),
            ("x", head(0, 1)),
            (DELEGATION_TAG, payload.clone()),
        ]),
    ]));
    malformed(&wrap(&[
        sig.clone(),
        cbor_map(&[("x", head(0, 1)), (DELEGATION_TAG, payload.clone())]),
    ]));
    malformed(&wrap(&[
        sig.clone(),
        cbor_map(&[
            ("h", cbor_text("NAHtAe0BE3E")),
            (DELEGATION_TAG, payload.clone()),
        ]),
    ]));
    malformed(&token_with(DELEGATION_TAG, head(4, 0)));
    // Trailing and truncated bytes, and nothing at all.
    let good = token_with(DELEGATION_TAG, payload);
    malformed(&[good.clone(), vec![0x00]].concat());
    malformed(&good[..good.len() - 1]);
    malformed(&[]);
}

#[test]
fn unknown_headers_are_header_errors() {
    let signed = cbor_map(&[
        (
            "h",
            cbor_bytes(&[0x34, 0x01, 0xed, 0x01, 0xed, 0x01, 0x13, 0xa9, 0x02]),
        ),
        (DELEGATION_TAG, cbor_map(&[("exp", head(0, 5))])),
    ]);
    let bytes = [vec![0x82], cbor_bytes(&[0; 64]), signed].concat();
    assert!(matches!(
        Envelope::decode(&bytes),
        Err(EnvelopeError::Header(_))
    ));
}

#[test]
fn nesting_is_bounded_without_overflowing_the_stack() {
    // 100 000 nested one-element arrays: rejected by the iterative pre-scan, well before any
    // recursive decoder could run out of stack.
    let mut deep = vec![0x81; 100_000];
    deep.push(0x01);
    let too_deep =
        |bytes: &[u8]| Envelope::decode(bytes) == Err(EnvelopeError::TooDeep { max: MAX_DEPTH });
    assert!(too_deep(&deep));
    assert!(too_deep(&token_with_value(deep)));
    // Envelope array, signed map, payload map, then arrays: exactly MAX_DEPTH levels is fine.
    let arrays = |levels: usize| [vec![0x81; levels], vec![0x01]].concat();
    Envelope::decode(&token_with_value(arrays(MAX_DEPTH - 3))).unwrap();
    assert!(too_deep(&token_with_value(arrays(MAX_DEPTH - 2))));
    // Named as a limit, stating it, when the token is read as a UCAN.
    let e = ucan_gateway::ucan::Delegation::decode(&token_with_value(arrays(MAX_DEPTH - 2)))
        .unwrap_err();
    assert_eq!(e.kind, ucan_gateway::ucan::ErrorKind::NestingTooDeep);
    assert!(e.message.contains("at most 64"), "{e}");
}

// --- Properties -------------------------------------------------------------------------------

fn key(alg: KeyAlg) -> &'static SigningKey {
    static KEYS: OnceLock<[SigningKey; 3]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| ALGS.map(SigningKey::generate));
    &keys[ALGS.iter().position(|a| *a == alg).unwrap_or(0)]
}

fn any_ipld() -> impl Strategy<Value = Ipld> {
    let max = i128::from(MAX_SAFE_INTEGER);
    let leaf = prop_oneof![
        Just(Ipld::Null),
        any::<bool>().prop_map(Ipld::Bool),
        (-max..=max).prop_map(Ipld::Integer),
        (proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO)
            .prop_map(Ipld::Float),
        ".{0,12}".prop_map(Ipld::String),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Ipld::Bytes),
        any::<[u8; 8]>().prop_map(|b| Ipld::Link(ipld::cid_for(ipld::RAW, &b))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Ipld::List),
            proptest::collection::btree_map(".{0,6}", inner, 0..6).prop_map(Ipld::Map),
        ]
    })
}

fn any_payload() -> impl Strategy<Value = Ipld> {
    proptest::collection::btree_map("[a-z]{1,8}", any_ipld(), 0..8)
        .prop_map(|m: BTreeMap<String, Ipld>| Ipld::Map(m))
}

fn any_alg() -> impl Strategy<Value = KeyAlg> {
    prop_oneof![
        Just(KeyAlg::Ed25519),
        Just(KeyAlg::P256),
        Just(KeyAlg::Secp256k1)
    ]
}

fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Delegation), Just(Kind::Invocation)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn signed_envelopes_decode_to_themselves(payload in any_payload(), alg in any_alg(), kind in any_kind()) {
        let key = key(alg);
        let env = Envelope::sign(kind, payload.clone(), key).unwrap();
        prop_assert_eq!(&env.payload, &payload);
        let back = Envelope::decode(&env.bytes).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.verify(&key.public()), Ok(()));
    }

    #[test]
    fn any_flipped_byte_breaks_decode_or_verify(
        payload in any_payload(),
        alg in any_alg(),
        at in any::<proptest::sample::Index>(),
        mask in 1u8..,
    ) {
        let key = key(alg);
        let mut bytes = Envelope::sign(Kind::Delegation, payload, key).unwrap().bytes;
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        if let Ok(env) = Envelope::decode(&bytes) {
            prop_assert!(env.verify(&key.public()).is_err(), "byte {} ^ {:#x} still verifies", at, mask);
        }
    }
}

// --- Every entry of the official delegation fixtures, read from the file itself ----------------

/// Reads `fixtures/delegation.json` and checks each `valid` entry end to end: the token decodes as a
/// delegation with the stated CID, its payload matches the stated fields, and its signature verifies
/// against its issuer, which is one of the stated principals. Any other section of the file lists
/// tokens that must be refused, so a newly added section cannot pass unexamined.
#[test]
fn official_delegation_fixtures_all_hold() {
    use ucan_gateway::ipld::to_dag_json;
    use ucan_gateway::ucan::Delegation;

    let text = std::fs::read_to_string(super::fixtures::path("delegation.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let principals: Vec<String> = doc["principals"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| {
            SigningKey::from_key_file(k.as_str().unwrap())
                .unwrap()
                .did()
        })
        .collect();
    assert_eq!(principals.len(), 3);

    let valid = doc["valid"].as_array().unwrap();
    assert!(!valid.is_empty());
    for case in valid {
        let name = case["name"].as_str().unwrap();
        let bytes = STANDARD.decode(case["token"].as_str().unwrap()).unwrap();
        let dlg = Delegation::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            dlg.cid().to_string(),
            case["cid"].as_str().unwrap(),
            "{name}"
        );
        let expected = &case["envelope"]["payload"];
        let actual: serde_json::Value =
            serde_json::from_str(&to_dag_json(&dlg.envelope.payload).unwrap()).unwrap();
        for field in ["iss", "aud", "sub", "cmd", "pol", "exp"] {
            assert_eq!(actual[field], expected[field], "{name}: field {field}");
        }
        assert_eq!(
            STANDARD.encode(&dlg.payload.nonce),
            expected["nonce"].as_str().unwrap(),
            "{name}: nonce"
        );
        assert_eq!(
            STANDARD.encode(&dlg.envelope.signature),
            case["envelope"]["signature"].as_str().unwrap(),
            "{name}: signature"
        );
        assert!(
            principals.contains(&dlg.payload.iss),
            "{name}: issuer is a fixture principal"
        );
        let issuer = PublicKey::from_did(&dlg.payload.iss).unwrap();
        dlg.envelope
            .verify(&issuer)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    for (section, cases) in doc.as_object().unwrap() {
        if matches!(
            section.as_str(),
            "version" | "comments" | "principals" | "valid"
        ) {
            continue;
        }
        for case in cases.as_array().unwrap() {
            let name = case["name"].as_str().unwrap_or("?");
            let Ok(bytes) = STANDARD.decode(case["token"].as_str().unwrap_or_default()) else {
                continue;
            };
            let refused = match Delegation::decode(&bytes) {
                Err(_) => true,
                Ok(dlg) => PublicKey::from_did(&dlg.payload.iss)
                    .map(|k| dlg.envelope.verify(&k).is_err())
                    .unwrap_or(true),
            };
            assert!(refused, "{section}/{name} must be refused");
        }
    }
}
