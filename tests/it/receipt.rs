//! Receipts: issued, encoded, decoded and verified; effects issued as invocations caused by the
//! receipt; malformed or forged receipts refused with their spec names; and the CLI reading them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command as Process;
use std::time::Duration;

use cid::Cid;
use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ipld::{MAX_SAFE_INTEGER, RAW, cid_for};
use ucan_gateway::receipt::{
    self, ASSERT_COMMAND, Effect, Effects, META_BACKEND, META_DURATION_MS, META_FUEL,
    META_MEMOIZED, Out, Receipt, ReceiptBody,
};
use ucan_gateway::ucan::invocation::{Invocation, InvocationBuilder};
use ucan_gateway::ucan::{Command, ErrorKind, ValidationError};

fn cmd(s: &str) -> Command {
    Command::parse(s).unwrap()
}

fn map(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn link(name: &[u8]) -> Cid {
    cid_for(RAW, name)
}

/// An invocation of `/wasm/run` by `alice` that the gateway answers.
fn answered(alice: &SigningKey, gateway: &SigningKey) -> Invocation {
    InvocationBuilder::new(
        alice.did(),
        cmd("/wasm/run"),
        map(&[("n", Ipld::Integer(2))]),
    )
    .audience(gateway.did())
    .sign(alice)
    .unwrap()
}

fn body_for(inv: &Invocation, out: Out, fx: Effects) -> ReceiptBody {
    ReceiptBody {
        ran: inv.cid(),
        task: inv.payload.task_id(),
        out,
        fx,
        meta: receipt::gateway_meta("wasm-backend", Some(1234), Duration::from_millis(56), None),
    }
}

fn effect(sub: &SigningKey, n: i128) -> Effect {
    Effect {
        cmd: cmd("/wasm/next"),
        sub: sub.did(),
        args: map(&[("n", Ipld::Integer(n))]),
        nonce: vec![n as u8; 3],
        iss: None,
        aud: None,
        meta: None,
        prf: None,
        exp: None,
    }
}

fn kind(result: Result<impl std::fmt::Debug, ValidationError>) -> ErrorKind {
    match result {
        Err(e) => e.kind,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn issue_decode_verify_round_trip() {
    let alice = SigningKey::generate(KeyAlg::Ed25519);
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&alice, &gateway);
    let body = body_for(&inv, Out::Ok(Ipld::Integer(42)), Effects::default());
    let issued = Receipt::issue(body.clone(), &gateway).unwrap();
    assert_eq!(issued.body, body);
    issued.verify(Some(&gateway.did())).unwrap();

    let decoded = Receipt::decode(issued.bytes()).unwrap();
    assert_eq!(decoded, issued);
    assert_eq!(decoded.cid(), issued.cid());
    decoded.verify(None).unwrap();
    decoded.verify(Some(&gateway.did())).unwrap();

    // The envelope is the receipt spec's: the gateway asserts to itself, permanently, unproven.
    let p = &decoded.invocation.payload;
    assert_eq!(p.cmd.as_str(), ASSERT_COMMAND);
    assert_eq!(p.iss, gateway.did());
    assert_eq!(p.sub, gateway.did());
    assert_eq!(p.aud.as_deref(), Some(gateway.did().as_str()));
    assert_eq!(p.exp, None);
    assert!(p.prf.is_empty());
    assert_eq!(p.nonce.len(), 12);
    assert_eq!(p.cause, None);
    assert_eq!(
        p.args,
        map(&[
            ("ran", Ipld::Link(inv.cid())),
            ("task", Ipld::Link(inv.payload.task_id())),
            ("out", Ipld::Map(map(&[("ok", Ipld::Integer(42))]))),
            ("fx", Ipld::Map(map(&[("fork", Ipld::List(vec![]))]))),
        ])
    );
    assert_eq!(
        p.meta.as_ref().unwrap(),
        &map(&[
            (META_BACKEND, Ipld::String("wasm-backend".into())),
            (META_FUEL, Ipld::Integer(1234)),
            (META_DURATION_MS, Ipld::Integer(56)),
        ])
    );

    // A fresh nonce each time: the same answer twice is two receipts.
    let again = Receipt::issue(body, &gateway).unwrap();
    assert_ne!(again.cid(), issued.cid());
}

#[test]
fn every_key_type_signs_receipts() {
    for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
        let gateway = SigningKey::generate(alg);
        let inv = answered(&SigningKey::generate(KeyAlg::Ed25519), &gateway);
        let r = Receipt::issue(
            body_for(&inv, Out::Ok(Ipld::Null), Effects::default()),
            &gateway,
        )
        .unwrap();
        Receipt::decode(r.bytes())
            .unwrap()
            .verify(Some(&gateway.did()))
            .unwrap();
    }
}

#[test]
fn a_tampered_byte_fails_the_signature() {
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&SigningKey::generate(KeyAlg::Ed25519), &gateway);
    let r = Receipt::issue(
        body_for(&inv, Out::Ok(Ipld::Integer(1)), Effects::default()),
        &gateway,
    )
    .unwrap();

    // In the signed payload: rename the backend, keeping the encoding canonical so it still decodes.
    let mut bytes = r.bytes().to_vec();
    let at = bytes
        .windows(b"wasm-backend".len())
        .position(|w| w == b"wasm-backend")
        .unwrap();
    bytes[at] = b'v';
    let forged = Receipt::decode(&bytes).unwrap();
    assert_eq!(
        forged.body.meta[META_BACKEND],
        Ipld::String("vasm-backend".into())
    );
    assert_eq!(kind(forged.verify(None)), ErrorKind::InvalidSignature);
    // The signature check comes before the issuer check.
    assert_eq!(
        kind(forged.verify(Some("did:key:z6MkOther"))),
        ErrorKind::InvalidSignature
    );

    // In the signature itself (after the array head and the byte-string head 0x58 0x40).
    let mut bytes = r.bytes().to_vec();
    bytes[10] ^= 0x01;
    let forged = Receipt::decode(&bytes).unwrap();
    assert_eq!(kind(forged.verify(None)), ErrorKind::InvalidSignature);
}

#[test]
fn another_issuer_than_the_executor_is_refused() {
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let impostor = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&SigningKey::generate(KeyAlg::Ed25519), &gateway);
    // A genuine receipt, but by someone other than the executor the invocation named.
    let r = Receipt::issue(
        body_for(&inv, Out::Ok(Ipld::Integer(1)), Effects::default()),
        &impostor,
    )
    .unwrap();
    r.verify(None).unwrap();
    let e = r.verify(Some(&gateway.did())).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidAudience);
    assert!(e.message.contains(&gateway.did()), "{e}");
    // A DID URL fragment does not change the principal.
    r.verify(Some(&format!("{}#key-1", impostor.did())))
        .unwrap();
}

#[test]
fn ok_and_error_outs_round_trip() {
    let gateway = SigningKey::generate(KeyAlg::P256);
    let inv = answered(&SigningKey::generate(KeyAlg::Ed25519), &gateway);
    let value = Ipld::Map(map(&[
        ("sum", Ipld::Integer(3)),
        ("blob", Ipld::Bytes(vec![0, 1, 2])),
        ("list", Ipld::List(vec![Ipld::Bool(true), Ipld::Null])),
    ]));
    let outs = [
        Out::Ok(value.clone()),
        Out::error("OutOfFuel", "ran out after 1000 units"),
    ];
    for out in outs {
        let r = Receipt::issue(body_for(&inv, out.clone(), Effects::default()), &gateway).unwrap();
        let back = Receipt::decode(r.bytes()).unwrap();
        assert_eq!(back.body.out, out);
        back.verify(Some(&gateway.did())).unwrap();
    }
    assert!(Out::Ok(Ipld::Null).is_ok());
    assert!(!Out::error("Trap", "unreachable").is_ok());
    assert_eq!(
        Out::error("Trap", "unreachable").to_ipld(),
        Ipld::Map(map(&[(
            "error",
            Ipld::Map(map(&[
                ("name", Ipld::String("Trap".into())),
                ("message", Ipld::String("unreachable".into())),
            ])),
        )]))
    );
    // Extra detail in an error (from another implementation, or a promise mismatch) is kept.
    let detailed = Ipld::Map(map(&[(
        "error",
        Ipld::Map(map(&[
            ("name", Ipld::String("Trap".into())),
            ("message", Ipld::String("x".into())),
            ("code", Ipld::Integer(7)),
        ])),
    )]));
    let read = Out::from_ipld(&detailed).unwrap();
    assert_eq!(
        read,
        Out::error_with(
            "Trap",
            "x",
            std::collections::BTreeMap::from([("code".to_owned(), Ipld::Integer(7))])
        )
    );
    assert_eq!(read.to_ipld(), detailed);
}

#[test]
fn effects_round_trip_and_issue_as_caused_invocations() {
    let alice = SigningKey::generate(KeyAlg::Ed25519);
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&alice, &gateway);
    let mut full = effect(&alice, 3);
    full.iss = Some(gateway.did());
    full.aud = Some(alice.did());
    full.meta = Some(map(&[("trace", Ipld::String("t1".into()))]));
    full.prf = Some(vec![link(b"delegation")]);
    full.exp = Some(1_900_000_000);
    let mut idempotent = effect(&alice, 2);
    idempotent.nonce = Vec::new();
    let fx = Effects {
        fork: vec![effect(&alice, 1), idempotent.clone()],
        join: Some(full.clone()),
    };
    assert!(!fx.is_empty());
    assert!(Effects::default().is_empty());

    let r = Receipt::issue(body_for(&inv, Out::Ok(Ipld::Null), fx.clone()), &gateway).unwrap();
    let back = Receipt::decode(r.bytes()).unwrap();
    assert_eq!(back.body.fx, fx);
    back.verify(Some(&gateway.did())).unwrap();

    for e in back.body.fx.fork.iter().chain(&back.body.fx.join) {
        let issued = e.issue(back.cid(), &gateway).unwrap();
        let p = &issued.payload;
        assert_eq!(p.cause, Some(back.cid()));
        assert_eq!(p.iss, gateway.did());
        assert_eq!(p.task_id(), e.task_id());
        assert_eq!(p.nonce, e.nonce);
        assert_eq!((&p.cmd, &p.sub, &p.args), (&e.cmd, &e.sub, &e.args));
        // It is a real token: it decodes to the same thing.
        assert_eq!(Invocation::decode(issued.bytes()).unwrap(), issued);
    }
    let joined = full.issue(back.cid(), &gateway).unwrap().payload;
    assert_eq!(joined.aud, full.aud);
    assert_eq!(joined.meta, full.meta);
    assert_eq!(joined.prf, vec![link(b"delegation")]);
    assert_eq!(joined.exp, Some(1_900_000_000));
    let forked = idempotent.issue(back.cid(), &gateway).unwrap().payload;
    assert!(forked.nonce.is_empty(), "an empty nonce stays empty");
    assert_eq!(forked.aud, None);
    assert!(forked.prf.is_empty());

    // Equal effects give equal task ids; the task id is the invocation spec's.
    assert_eq!(effect(&alice, 1).task_id(), effect(&alice, 1).task_id());
    assert_ne!(effect(&alice, 1).task_id(), effect(&alice, 4).task_id());
    assert_eq!(
        Effect::from_ipld(&full.to_ipld()).unwrap(),
        full,
        "every optional field survives"
    );
}

#[test]
fn an_effect_for_another_issuer_is_not_signed() {
    let alice = SigningKey::generate(KeyAlg::Ed25519);
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let mut e = effect(&alice, 1);
    e.iss = Some(alice.did());
    let err = e.issue(link(b"receipt"), &gateway).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAudience);
    assert_eq!(
        e.issue(link(b"receipt"), &alice).unwrap().payload.iss,
        alice.did()
    );
}

#[test]
fn a_normal_invocation_is_not_a_receipt() {
    let alice = SigningKey::generate(KeyAlg::Ed25519);
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&alice, &gateway);
    let err = Receipt::from_invocation(inv.clone()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedToken);
    assert!(err.message.contains("/ucan/assert"), "{err}");
    assert_eq!(
        kind(Receipt::decode(inv.bytes())),
        ErrorKind::MalformedToken
    );
    // Nor is a delegation or garbage.
    assert_eq!(
        kind(Receipt::decode(b"\x82\x00")),
        ErrorKind::MalformedToken
    );
    assert_eq!(kind(Receipt::decode(&[])), ErrorKind::MalformedToken);
}

/// A `/ucan/assert` invocation signed by `key` with the given principals and args.
fn assert_token(
    key: &SigningKey,
    sub: &str,
    aud: Option<&str>,
    args: BTreeMap<String, Ipld>,
) -> Vec<u8> {
    let mut b = InvocationBuilder::new(sub, cmd(ASSERT_COMMAND), args);
    if let Some(aud) = aud {
        b = b.audience(aud);
    }
    b.sign(key).unwrap().bytes().to_vec()
}

#[test]
fn malformed_receipts_are_refused() {
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let other = SigningKey::generate(KeyAlg::Ed25519).did();
    let me = gateway.did();
    let inv = answered(&SigningKey::generate(KeyAlg::Ed25519), &gateway);
    let good = body_for(&inv, Out::Ok(Ipld::Integer(1)), Effects::default()).to_args();
    // The good args decode; each case below breaks exactly one thing.
    Receipt::decode(&assert_token(&gateway, &me, Some(&me), good.clone()))
        .unwrap()
        .verify(Some(&me))
        .unwrap();

    let with = |key: &str, value: Ipld| {
        let mut args = good.clone();
        args.insert(key.into(), value);
        args
    };
    let without = |key: &str| {
        let mut args = good.clone();
        args.remove(key);
        args
    };
    let fx_with = |fork: Vec<Ipld>, join: Option<Ipld>| {
        let mut fx = map(&[("fork", Ipld::List(fork))]);
        if let Some(join) = join {
            fx.insert("join".into(), join);
        }
        with("fx", Ipld::Map(fx))
    };
    let good_effect = effect(&gateway, 1).to_ipld();
    let effect_with = |key: &str, value: Option<Ipld>| {
        let Ipld::Map(mut e) = good_effect.clone() else {
            unreachable!()
        };
        match value {
            Some(v) => e.insert(key.into(), v),
            None => e.remove(key),
        };
        Ipld::Map(e)
    };
    let cases: Vec<(&str, BTreeMap<String, Ipld>)> = vec![
        ("ran", without("ran")),
        ("ran", with("ran", Ipld::String(inv.cid().to_string()))),
        ("task", without("task")),
        ("out", without("out")),
        ("out", with("out", Ipld::Integer(1))),
        ("out", with("out", Ipld::Map(BTreeMap::new()))),
        (
            "out",
            with(
                "out",
                // Both branches, each well formed on its own.
                Ipld::Map(map(&[
                    ("ok", Ipld::Null),
                    (
                        "error",
                        Ipld::Map(map(&[
                            ("name", Ipld::String("Trap".into())),
                            ("message", Ipld::String("x".into())),
                        ])),
                    ),
                ])),
            ),
        ),
        (
            "out",
            with("out", Ipld::Map(map(&[("result", Ipld::Null)]))),
        ),
        (
            "out",
            with(
                "out",
                Ipld::Map(map(&[("error", Ipld::String("boom".into()))])),
            ),
        ),
        (
            "message",
            with(
                "out",
                Ipld::Map(map(&[(
                    "error",
                    Ipld::Map(map(&[("name", Ipld::String("Trap".into()))])),
                )])),
            ),
        ),
        ("fx", without("fx")),
        ("fork", with("fx", Ipld::Map(BTreeMap::new()))),
        ("fork", with("fx", Ipld::Map(map(&[("fork", Ipld::Null)])))),
        ("effect", fx_with(vec![Ipld::Integer(1)], None)),
        ("effect", fx_with(vec![], Some(Ipld::List(vec![])))),
        ("nonce", fx_with(vec![effect_with("nonce", None)], None)),
        (
            "nonce",
            fx_with(
                vec![effect_with("nonce", Some(Ipld::String("n".into())))],
                None,
            ),
        ),
        (
            "cmd",
            fx_with(
                vec![effect_with("cmd", Some(Ipld::String("NoSlash".into())))],
                None,
            ),
        ),
        ("sub", fx_with(vec![], Some(effect_with("sub", None)))),
        (
            "args",
            fx_with(vec![effect_with("args", Some(Ipld::Null))], None),
        ),
        (
            "prf",
            fx_with(
                vec![effect_with("prf", Some(Ipld::List(vec![Ipld::Null])))],
                None,
            ),
        ),
        (
            "exp",
            fx_with(
                vec![effect_with("exp", Some(Ipld::String("soon".into())))],
                None,
            ),
        ),
        (
            "cause",
            fx_with(
                vec![effect_with("cause", Some(Ipld::Link(link(b"r"))))],
                None,
            ),
        ),
    ];
    for (field, args) in cases {
        let bytes = assert_token(&gateway, &me, Some(&me), args.clone());
        match Receipt::decode(&bytes) {
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::MalformedToken, "{field}: {e}");
                assert!(e.message.contains(field), "{field}: {e}");
            }
            Ok(r) => panic!("{field}: accepted {:?}", r.body),
        }
    }

    // The principals must close the loop: iss = sub = aud.
    for (sub, aud, what) in [
        (other.as_str(), Some(me.as_str()), "subject"),
        (me.as_str(), Some(other.as_str()), "audience"),
        (me.as_str(), None, "aud"),
    ] {
        let err = Receipt::decode(&assert_token(&gateway, sub, aud, good.clone())).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MalformedToken);
        assert!(err.message.contains(what), "{what}: {err}");
    }
}

#[test]
fn gateway_meta_is_small_and_capped() {
    let memo = link(b"earlier receipt");
    let meta = receipt::gateway_meta("wasm", None, Duration::from_secs(u64::MAX), Some(memo));
    assert_eq!(
        meta,
        map(&[
            (META_BACKEND, Ipld::String("wasm".into())),
            (META_DURATION_MS, Ipld::Integer(MAX_SAFE_INTEGER.into())),
            (META_MEMOIZED, Ipld::Link(memo)),
        ])
    );
    let capped = receipt::gateway_meta("wasm", Some(u64::MAX), Duration::ZERO, None);
    assert_eq!(capped[META_FUEL], Ipld::Integer(MAX_SAFE_INTEGER.into()));
    assert_eq!(capped[META_DURATION_MS], Ipld::Integer(0));

    // Capped values are signable; an empty meta is left out of the token.
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&SigningKey::generate(KeyAlg::Ed25519), &gateway);
    let mut body = body_for(&inv, Out::Ok(Ipld::Null), Effects::default());
    body.meta = capped;
    Receipt::issue(body.clone(), &gateway).unwrap();
    body.meta = BTreeMap::new();
    let bare = Receipt::issue(body, &gateway).unwrap();
    assert_eq!(bare.invocation.payload.meta, None);
    assert_eq!(
        Receipt::decode(bare.bytes()).unwrap().body.meta,
        BTreeMap::new()
    );
}

#[test]
fn to_json_is_a_readable_view() {
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let alice = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&alice, &gateway);
    let fx = Effects {
        fork: vec![effect(&alice, 1)],
        join: None,
    };
    let r = Receipt::issue(
        body_for(&inv, Out::Ok(Ipld::Bytes(b"hi".to_vec())), fx),
        &gateway,
    )
    .unwrap();
    let json = r.to_json();
    assert_eq!(json["cid"], r.cid().to_string());
    assert_eq!(json["iss"], gateway.did());
    assert_eq!(json["ran"], inv.cid().to_string());
    assert_eq!(json["task"], inv.payload.task_id().to_string());
    assert_eq!(
        json["out"],
        serde_json::json!({ "ok": { "/": { "bytes": "aGk" } } })
    );
    assert_eq!(json["fx"]["fork"][0]["cmd"], "/wasm/next");
    assert_eq!(
        json["fx"]["fork"][0]["nonce"],
        serde_json::json!({ "/": { "bytes": "AQEB" } })
    );
    assert_eq!(json["meta"][META_BACKEND], "wasm-backend");
    assert_eq!(json["meta"][META_FUEL], 1234);

    let failed = Receipt::issue(
        body_for(&inv, Out::error("Trap", "unreachable"), Effects::default()),
        &gateway,
    )
    .unwrap();
    assert_eq!(
        failed.to_json()["out"],
        serde_json::json!({ "error": { "name": "Trap", "message": "unreachable" } })
    );
}

/// A scratch file removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn write(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "ucan-gateway-receipt-{name}-{}",
            std::process::id()
        ));
        std::fs::write(&path, bytes).unwrap();
        Scratch(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the binary; returns the exit code and stdout parsed as one JSON value.
fn cli(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Process::new(env!("CARGO_BIN_EXE_ucan-gateway"))
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON value ({e}): {text}"));
    (out.status.code().unwrap(), json)
}

#[test]
fn the_cli_knows_receipts() {
    let alice = SigningKey::generate(KeyAlg::Ed25519);
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    let inv = answered(&alice, &gateway);
    let r = Receipt::issue(
        body_for(&inv, Out::Ok(Ipld::Integer(42)), Effects::default()),
        &gateway,
    )
    .unwrap();
    let receipt_file = Scratch::write("good", r.bytes());
    let inv_file = Scratch::write("inv", inv.bytes());

    let (code, json) = cli(&["inspect", receipt_file.path()]);
    assert_eq!((code, json["kind"].as_str()), (0, Some("receipt")));
    assert_eq!(json["cid"], r.cid().to_string());
    let (code, json) = cli(&["inspect", inv_file.path()]);
    assert_eq!((code, json["kind"].as_str()), (0, Some("invocation")));

    let (code, json) = cli(&["verify", "--invocation", receipt_file.path()]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["ok"]["receipt"]["cid"], r.cid().to_string());
    assert_eq!(
        json["ok"]["receipt"]["out"],
        serde_json::json!({ "ok": 42 })
    );
    assert_eq!(json["ok"]["receipt"]["ran"], inv.cid().to_string());

    let mut forged = r.bytes().to_vec();
    forged[10] ^= 0x01;
    let forged_file = Scratch::write("forged", &forged);
    let (code, json) = cli(&["verify", "--invocation", forged_file.path()]);
    assert_eq!(
        (code, json["error"]["name"].as_str()),
        (1, Some("InvalidSignature"))
    );
    let (code, json) = cli(&["inspect", forged_file.path()]);
    assert_eq!(code, 1);
    assert_eq!(json["kind"], "receipt");
    assert!(
        json["signature"].as_str().unwrap().starts_with("invalid"),
        "{json}"
    );
}
