//! What a delegation's policy approved is what runs: an argument that would reach the guest as a
//! different value (wrapped, truncated, rounded, or turned into text) is refused with an
//! `InvalidArgs` receipt naming it, over real HTTP.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::receipt::{META_FUEL, Out};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Policy};

use crate::gateway::{ADD_WAT, args, container, gateway, receipt, wasm};

/// The error receipt's name and message.
fn error(out: &Out) -> (&str, &str) {
    match out {
        Out::Error { name, message, .. } => (name, message),
        Out::Ok(v) => panic!("expected an error receipt, got ok {v:?}"),
    }
}

#[tokio::test]
async fn an_argument_the_policy_approved_runs_as_that_number_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let friend = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(
        dir.path(),
        &operator,
        "[[route]]\ncommand = \"/wasi/run\"\nbackend = \"wasi\"\neffect = \"pure\"",
    )
    .await;
    // The operator lets the friend run anything whose first argument is not negative.
    let grant = DelegationBuilder::new(
        friend.did(),
        Some(operator.did()),
        Command::parse("/").unwrap(),
    )
    .policy(Policy::from_json(r#"[[">=", ".args[0]", 0]]"#).unwrap())
    .expires(Some(unix_now() + 3600))
    .sign(&operator)
    .unwrap();
    let run = |cmd: &str, a: BTreeMap<String, Ipld>| {
        let inv = InvocationBuilder::new(operator.did(), Command::parse(cmd).unwrap(), a)
            .audience(gw.did.clone())
            .proofs(vec![grant.cid()])
            .expires(Some(unix_now() + 300))
            .sign(&friend)
            .unwrap();
        container(&inv, std::slice::from_ref(&grant))
    };
    let add = |a: i128, b: i128| {
        args(vec![
            ("module", Ipld::Bytes(wasm(ADD_WAT))),
            ("func", Ipld::String("add".into())),
            ("args", Ipld::List(vec![Ipld::Integer(a), Ipld::Integer(b)])),
        ])
    };

    let r = receipt(&gw, run("/wasm/run", add(2, 40))).await;
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(42)));

    // 4294967295 passes `>= 0`; as an i32 it would be -1, and add(-1, 1) would answer 0.
    let r = receipt(&gw, run("/wasm/run", add(4_294_967_295, 1))).await;
    let (name, message) = error(&r.body.out);
    assert_eq!(name, "InvalidArgs", "{message}");
    assert!(
        message.contains("argument 0 (4294967295)"),
        "names the argument: {message}"
    );
    let fuel = r.body.meta.get(META_FUEL);
    assert!(
        matches!(fuel, None | Some(Ipld::Integer(0))),
        "nothing ran: {fuel:?}"
    );

    // A float for an integer parameter is not rounded or truncated.
    let mut floats = add(0, 0);
    floats.insert(
        "args".into(),
        Ipld::List(vec![Ipld::Float(1.5), Ipld::Integer(1)]),
    );
    let r = receipt(&gw, run("/wasm/run", floats)).await;
    let (name, message) = error(&r.body.out);
    assert_eq!(
        (name, message.contains("argument 0")),
        ("InvalidArgs", true),
        "{message}"
    );

    // WASI arguments are strings: a number (which the policy approved as a number) is not turned
    // into its text, and the refusal names it.
    let wasi = args(vec![
        ("module", Ipld::Bytes(wasm(ADD_WAT))),
        ("args", Ipld::List(vec![Ipld::Integer(7)])),
    ]);
    let r = receipt(&gw, run("/wasi/run", wasi)).await;
    let (name, message) = error(&r.body.out);
    assert_eq!(name, "InvalidArgs", "{message}");
    assert!(
        message.contains("args[0] must be a string, not an integer"),
        "{message}"
    );
    gw.stop().await.unwrap();
}
