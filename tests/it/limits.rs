//! Every limit a request can hit is refused over HTTP by its own name, with a message that states
//! the limit, and a status that says "too big" (400 or 413), never "not authorised".

use std::collections::BTreeMap;
use std::io::Write;

use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ucan::container::{Container, Format, MAX_DECOMPRESSED, MAX_TOKENS};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::envelope::{Envelope, Kind};
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::policy::{MAX_DEPTH, MAX_SELECTOR_LEN};
use ucan_gateway::ucan::validate::{MAX_CHAIN, unix_now};
use ucan_gateway::ucan::{Command, Invocation};

use crate::gateway::{gateway, post};

/// Posts `body` and expects the refusal `name` with `status`; gives its message.
async fn refusal(gw: &ucan_gateway::cli::serve::Running, body: Vec<u8>) -> (u16, String, String) {
    let (status, bytes) = post(gw, body).await;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    let text = |key: &str| json["error"][key].as_str().unwrap_or_default().to_owned();
    (status, text("name"), text("message"))
}

fn raw_container(tokens: Vec<Vec<u8>>) -> Vec<u8> {
    Container { tokens }.encode(Format::Raw)
}

/// A delegation from `issuer` to `audience` on `issuer`'s own subject whose `pol` is `policy`,
/// signed as it is: the builder would refuse the policies these tests need.
fn delegation_with_policy(issuer: &SigningKey, audience: &str, policy: Ipld) -> Vec<u8> {
    let payload = Ipld::Map(BTreeMap::from([
        ("iss".to_owned(), Ipld::String(issuer.did())),
        ("aud".to_owned(), Ipld::String(audience.to_owned())),
        ("sub".to_owned(), Ipld::String(issuer.did())),
        ("cmd".to_owned(), Ipld::String("/".into())),
        ("pol".to_owned(), policy),
        ("nonce".to_owned(), Ipld::Bytes(b"limits".to_vec())),
        (
            "exp".to_owned(),
            Ipld::Integer(i128::from(unix_now() + 3600)),
        ),
    ]));
    Envelope::sign(Kind::Delegation, payload, issuer)
        .unwrap()
        .bytes
}

fn invocation(operator: &SigningKey, invoker: &SigningKey, aud: &str, n: i128) -> Invocation {
    InvocationBuilder::new(
        operator.did(),
        Command::parse("/wasm/run").unwrap(),
        BTreeMap::from([("n".to_owned(), Ipld::Integer(n))]),
    )
    .audience(aud.to_owned())
    .expires(Some(unix_now() + 300))
    .sign(invoker)
    .unwrap()
}

#[tokio::test]
async fn each_limit_is_refused_by_its_name_stating_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let friend = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, "").await;

    // ChainTooLong: MAX_CHAIN + 1 proofs.
    let root = DelegationBuilder::new(
        friend.did(),
        Some(operator.did()),
        Command::parse("/").unwrap(),
    )
    .expires(Some(unix_now() + 3600))
    .sign(&operator)
    .unwrap();
    let long = InvocationBuilder::new(
        operator.did(),
        Command::parse("/wasm/run").unwrap(),
        BTreeMap::new(),
    )
    .audience(gw.did.clone())
    .proofs(vec![root.cid(); MAX_CHAIN + 1])
    .expires(Some(unix_now() + 300))
    .sign(&friend)
    .unwrap();
    let body = raw_container(vec![long.bytes().to_vec(), root.bytes().to_vec()]);
    assert_eq!(
        refusal(&gw, body).await,
        (400, "ChainTooLong".into(), "33 proofs; at most 32".into())
    );

    // PipelineTooLong: one invocation more than a request may carry.
    let pipeline = (0..17)
        .map(|n| {
            invocation(&operator, &operator, &gw.did, n)
                .bytes()
                .to_vec()
        })
        .collect();
    assert_eq!(
        refusal(&gw, raw_container(pipeline)).await,
        (
            400,
            "PipelineTooLong".into(),
            "more than 16 invocations; at most 16".into()
        )
    );

    // TooManyTokens: counted before any token is decoded (distinct: the writer drops duplicates).
    let tokens = (0..=MAX_TOKENS as u32)
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    assert_eq!(
        refusal(&gw, raw_container(tokens)).await,
        (
            400,
            "TooManyTokens".into(),
            format!(
                "the container holds {} tokens; at most {MAX_TOKENS}",
                MAX_TOKENS + 1
            )
        )
    );

    // ContainerTooLarge: a small body that inflates past the bound.
    let mut gz = flate2::write::GzEncoder::new(vec![b'M'], flate2::Compression::best());
    gz.write_all(&vec![0; MAX_DECOMPRESSED + 1]).unwrap();
    let (status, name, message) = refusal(&gw, gz.finish().unwrap()).await;
    assert_eq!((status, name.as_str()), (413, "ContainerTooLarge"));
    assert!(
        message.contains(&format!("at most {MAX_DECOMPRESSED} bytes")),
        "{message}"
    );

    // NestingTooDeep: a token whose DAG-CBOR nests far too deep.
    let deep = [vec![0x81; 100], vec![0x01]].concat();
    let (status, name, message) = refusal(&gw, raw_container(vec![deep])).await;
    assert_eq!((status, name.as_str()), (400, "NestingTooDeep"));
    assert!(message.contains("at most 64"), "{message}");

    // PolicyTooDeep and SelectorTooLong, in a delegation that comes with the invocation.
    let nots = (0..MAX_DEPTH).fold(
        Ipld::List(vec![
            Ipld::String("==".into()),
            Ipld::String(".n".into()),
            Ipld::Integer(1),
        ]),
        |inner, _| Ipld::List(vec![Ipld::String("not".into()), inner]),
    );
    let long_selector = Ipld::List(vec![
        Ipld::String("==".into()),
        Ipld::String(format!(".{}", "a".repeat(MAX_SELECTOR_LEN))),
        Ipld::Integer(1),
    ]);
    for (policy, name, limit) in [
        (nots, "PolicyTooDeep", format!("at most {MAX_DEPTH}")),
        (
            long_selector,
            "SelectorTooLong",
            format!("at most {MAX_SELECTOR_LEN}"),
        ),
    ] {
        let dlg = delegation_with_policy(&operator, &friend.did(), Ipld::List(vec![policy]));
        let inv = invocation(&operator, &friend, &gw.did, 1);
        let (status, got, message) =
            refusal(&gw, raw_container(vec![inv.bytes().to_vec(), dlg])).await;
        assert_eq!((status, got.as_str()), (400, name), "{message}");
        assert!(message.contains(&limit), "{message}");
    }

    // PayloadTooLarge: the route's `max_body` (1 MiB here).
    let (status, name, message) = refusal(&gw, vec![b'@'; 2 * 1024 * 1024]).await;
    assert_eq!((status, name.as_str()), (413, "PayloadTooLarge"));
    assert!(message.contains("1048576 bytes"), "{message}");
    gw.stop().await.unwrap();
}

/// A policy of 100 passes over a 20,000-element list: every statement holds, but deciding them all
/// takes more than the evaluation budget.
const COSTLY: &str = r#"["all", ".xs", [">=", ".", 0]]"#;

fn costly_policy() -> String {
    format!("[{}]", vec![COSTLY; 100].join(","))
}

fn many_numbers() -> Ipld {
    Ipld::List((0..20_000).map(Ipld::Integer).collect())
}

#[tokio::test]
async fn a_policy_too_costly_to_decide_is_policy_too_complex_not_match_error() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let friend = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, "").await;

    // In a delegation's policy (step 3g).
    let policy = ucan_gateway::ipld::from_dag_json(&costly_policy()).unwrap();
    let dlg = Envelope::sign(
        Kind::Delegation,
        {
            let Ipld::Map(mut payload) = Envelope::decode(&delegation_with_policy(
                &operator,
                &friend.did(),
                Ipld::List(Vec::new()),
            ))
            .unwrap()
            .payload
            else {
                unreachable!()
            };
            payload.insert("pol".to_owned(), policy);
            Ipld::Map(payload)
        },
        &operator,
    )
    .unwrap();
    let inv = InvocationBuilder::new(
        operator.did(),
        Command::parse("/wasm/run").unwrap(),
        BTreeMap::from([("xs".to_owned(), many_numbers())]),
    )
    .audience(gw.did.clone())
    .proofs(vec![dlg.cid])
    .expires(Some(unix_now() + 300))
    .sign(&friend)
    .unwrap();
    let body = raw_container(vec![inv.bytes().to_vec(), dlg.bytes.clone()]);
    let (status, name, message) = refusal(&gw, body).await;
    assert_eq!(
        (status, name.as_str()),
        (400, "PolicyTooComplex"),
        "{message}"
    );
    assert!(message.contains("evaluation steps; at most"), "{message}");
    gw.stop().await.unwrap();

    // In the operator's admission rule.
    let dir = tempfile::tempdir().unwrap();
    let rule = format!("admission = '{}'", costly_policy());
    let gw = crate::gateway::gateway_with(dir.path(), &operator, &rule, "").await;
    let inv = InvocationBuilder::new(
        operator.did(),
        Command::parse("/wasm/run").unwrap(),
        BTreeMap::from([("xs".to_owned(), many_numbers())]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&operator)
    .unwrap();
    let (status, name, message) = refusal(&gw, raw_container(vec![inv.bytes().to_vec()])).await;
    assert_eq!(
        (status, name.as_str()),
        (400, "PolicyTooComplex"),
        "{message}"
    );
    gw.stop().await.unwrap();
}
