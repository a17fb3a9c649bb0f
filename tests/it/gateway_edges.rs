//! Edges of the one path that every wire format shares: revocations are replay-protected like any
//! invocation, an invocation's own `nbf` is honoured, and no caller can add a metric series.

use std::collections::BTreeMap;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::did::SigningKey;
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucanto::car::Car;
use ucan_gateway::ucanto::token::{Capability, Ucan, UcanFields};

use super::gateway::{args, container, gateway, receipt, refused, world};

/// The series of `ucan_gateway_invocations_total` the gateway exports now.
async fn invocation_series(gw: &Running) -> Vec<String> {
    let text = reqwest::get(format!("http://{}/metrics", gw.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("ucan_gateway_invocations_total{"))
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn the_same_revocation_is_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let revoke = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/ucan/revoke").unwrap(),
        args(vec![("revoke", Ipld::Link(w.chain[1].cid()))]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.app)
    .unwrap();
    let body = container(&revoke, &w.chain);
    assert!(receipt(&gw, body.clone()).await.body.out.is_ok());
    refused(&gw, body, 409, "Replayed").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn an_invocation_is_not_run_before_its_nbf() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let early = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        args(vec![("func", Ipld::String("add".into()))]),
    )
    .audience(gw.did.clone())
    .proofs(w.chain.iter().map(|d| d.cid()).collect())
    .not_before(Some(unix_now() + 600))
    .expires(Some(unix_now() + 900))
    .sign(&w.friend)
    .unwrap();
    refused(&gw, container(&early, &w.chain), 403, "TooEarly").await;
    gw.stop().await.unwrap();
}

/// A ucanto message invoking `can` on the operator's authority.
fn ucanto_message(operator: &SigningKey, gateway: &str, can: &str) -> Vec<u8> {
    let (inv, bytes) = Ucan::issue(
        &UcanFields {
            aud: gateway.to_owned(),
            att: vec![Capability {
                with: operator.did(),
                can: can.to_owned(),
                nb: BTreeMap::new(),
            }],
            exp: Some(unix_now() + 60),
            ..UcanFields::default()
        },
        operator,
    )
    .unwrap();
    let root = ucan_gateway::ipld::to_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "ucanto/message@7.0.0".to_owned(),
        Ipld::Map(BTreeMap::from([(
            "execute".to_owned(),
            Ipld::List(vec![Ipld::Link(inv)]),
        )])),
    )])))
    .unwrap();
    let cid = ucan_gateway::ipld::dag_cbor_cid(&root);
    Car::encode(cid, &[(cid, root), (inv, bytes)])
}

#[tokio::test]
async fn unknown_commands_add_no_metric_series_on_either_wire_format() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let unknown = |i: usize| {
        let inv = InvocationBuilder::new(
            w.operator.did(),
            Command::parse(&format!("/rand/x{i}")).unwrap(),
            BTreeMap::new(),
        )
        .audience(gw.did.clone())
        .proofs(w.chain.iter().map(|d| d.cid()).collect())
        .expires(Some(unix_now() + 300))
        .sign(&w.friend)
        .unwrap();
        container(&inv, &w.chain)
    };
    let client = reqwest::Client::new();
    let ucanto = |i: usize| {
        client
            .post(format!("http://{}/", gw.addr))
            .header("content-type", "application/vnd.ipld.car")
            .body(ucanto_message(&w.operator, &gw.did, &format!("rand/y{i}")))
            .send()
    };

    // One of each first, so every series an unknown command can touch exists.
    refused(&gw, unknown(0), 404, "UnknownCommand").await;
    assert_eq!(ucanto(0).await.unwrap().status(), 200);
    let before = invocation_series(&gw).await;
    for i in 1..1000 {
        refused(&gw, unknown(i), 404, "UnknownCommand").await;
    }
    for i in 1..100 {
        assert_eq!(ucanto(i).await.unwrap().status(), 200);
    }
    let after = invocation_series(&gw).await;
    assert_eq!(
        before, after,
        "1,099 distinct unknown commands added series"
    );
    assert!(
        after.iter().all(|s| !s.contains("/rand")),
        "a caller's command became a label: {after:?}"
    );
    assert!(
        after.iter().any(|s| s.contains("command=\"other\"")),
        "{after:?}"
    );
    gw.stop().await.unwrap();
}
