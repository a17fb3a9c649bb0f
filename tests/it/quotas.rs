//! Delegation quotas over real HTTP: `"gateway/quota"` in a delegation's signed `meta` bounds the
//! invocations its chain proves, exactly, across replicas sharing a store; the narrowest quota in a
//! chain wins; refusals use nothing; windows roll over; `delegate --quota` writes it.

use std::collections::BTreeMap;
use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::gateway::{QUOTA_META, Quota};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Delegation, Policy};

use super::gateway::{
    ADD_WAT, World, add_args, container, gateway, invoke, receipt, replica_store, serve_policy_on,
    wasm, world, write_policy,
};

fn quota(n: i128, per: &str) -> BTreeMap<String, Ipld> {
    BTreeMap::from([(
        QUOTA_META.to_owned(),
        Ipld::Map(BTreeMap::from([
            ("invocations".to_owned(), Ipld::Integer(n)),
            ("per".to_owned(), Ipld::String(per.to_owned())),
        ])),
    )])
}

/// The world with quotas on its root and leaf delegations.
fn metered(root: Option<(i128, &str)>, leaf: Option<(i128, &str)>) -> World {
    let mut w = world();
    let exp = Some(unix_now() + 3600);
    let mut r = DelegationBuilder::new(
        w.app.did(),
        Some(w.operator.did()),
        Command::parse("/").unwrap(),
    )
    .expires(exp);
    if let Some((n, per)) = root {
        r = r.meta(quota(n, per));
    }
    let mut l = DelegationBuilder::new(
        w.friend.did(),
        Some(w.operator.did()),
        Command::parse("/wasm/run").unwrap(),
    )
    .policy(Policy::from_json(r#"[["==", ".func", "add"]]"#).unwrap())
    .expires(exp);
    if let Some((n, per)) = leaf {
        l = l.meta(quota(n, per));
    }
    w.chain = vec![r.sign(&w.operator).unwrap(), l.sign(&w.app).unwrap()];
    w
}

/// Posts `add(a, 1)` by the friend: status, error name and message, Retry-After.
async fn add(w: &World, gw: &Running, a: i128) -> (u16, String, String, Option<u64>) {
    let inv = invoke(w, gw, "/wasm/run", add_args(wasm(ADD_WAT), a, 1));
    let response = reqwest::Client::new()
        .post(format!("http://{}/", gw.addr))
        .body(container(&inv, &w.chain))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let json: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
    let name = json["error"]["name"].as_str().unwrap_or("").to_owned();
    let message = json["error"]["message"].as_str().unwrap_or("").to_owned();
    (status, name, message, retry)
}

fn cid(d: &Delegation) -> String {
    d.cid().to_string()
}

#[tokio::test]
async fn a_quota_of_three_lets_exactly_three_through_across_two_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let w = metered(None, Some((3, "1h")));
    // Two replicas sharing one store (and the key, kept in the same data directory).
    let store = replica_store().await;
    let policy = write_policy(dir.path(), &w.operator, "", "");
    let a = serve_policy_on(
        dir.path(),
        policy.clone(),
        Default::default(),
        store.clone(),
    )
    .await;
    let b = serve_policy_on(dir.path(), policy, Default::default(), store).await;
    assert_eq!(a.did, b.did);

    // A refusal uses nothing: this one breaks the leaf's policy.
    let mut wrong = add_args(wasm(ADD_WAT), 1, 1);
    wrong.insert("func".into(), Ipld::String("mul".into()));
    let inv = invoke(&w, &a, "/wasm/run", wrong);
    super::gateway::refused(&a, container(&inv, &w.chain), 403, "MatchError").await;

    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let (status, name, ..) = add(&w, gw, i as i128).await;
        assert_eq!(status, 200, "invocation {i}: {name}");
    }
    for gw in [&b, &a] {
        let (status, name, message, retry) = add(&w, gw, 9).await;
        assert_eq!((status, name.as_str()), (429, "QuotaExceeded"));
        assert!(message.contains(&cid(&w.chain[1])), "{message}");
        let retry = retry.expect("Retry-After");
        assert!((1..=3600).contains(&retry), "{retry}");
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn the_narrowest_quota_in_the_chain_wins() {
    let dir = tempfile::tempdir().unwrap();
    let w = metered(Some((10, "1h")), Some((2, "1h")));
    let gw = gateway(dir.path(), &w.operator, "").await;
    assert_eq!(add(&w, &gw, 1).await.0, 200);
    assert_eq!(add(&w, &gw, 2).await.0, 200);
    let (status, name, message, _) = add(&w, &gw, 3).await;
    assert_eq!((status, name.as_str()), (429, "QuotaExceeded"));
    assert!(message.contains(&cid(&w.chain[1])), "{message}");
    assert!(!message.contains(&cid(&w.chain[0])), "{message}");
    // The root's quota counted those two as well: with eight left, the app's own invocations
    // under the root alone stop after eight.
    let by_app = |n: i128| {
        ucan_gateway::ucan::invocation::InvocationBuilder::new(
            w.operator.did(),
            Command::parse("/wasm/run").unwrap(),
            add_args(wasm(ADD_WAT), n, n),
        )
        .audience(gw.did.clone())
        .proofs(vec![w.chain[0].cid()])
        .expires(Some(unix_now() + 300))
        .sign(&w.app)
        .unwrap()
    };
    for n in 0..8 {
        receipt(&gw, container(&by_app(n), &w.chain[..1])).await;
    }
    let response = reqwest::Client::new()
        .post(format!("http://{}/", gw.addr))
        .body(container(&by_app(99), &w.chain[..1]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&cid(&w.chain[0])),
        "{json}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_window_rolls_over() {
    let dir = tempfile::tempdir().unwrap();
    let w = metered(None, Some((1, "2s")));
    let gw = gateway(dir.path(), &w.operator, "").await;
    // Start just after a window opens, so the two first requests share it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let into = now.as_millis() % 2000;
    tokio::time::sleep(Duration::from_millis((2000 - into as u64) + 50)).await;
    assert_eq!(add(&w, &gw, 1).await.0, 200);
    let (status, name, _, retry) = add(&w, &gw, 2).await;
    assert_eq!((status, name.as_str()), (429, "QuotaExceeded"));
    let retry = retry.unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    tokio::time::sleep(Duration::from_secs(retry) + Duration::from_millis(100)).await;
    assert_eq!(add(&w, &gw, 3).await.0, 200);
    gw.stop().await.unwrap();
}

#[test]
fn delegate_writes_a_quota_the_gateway_reads() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let out = dir.path().join("d.ucan");
    let bin = env!("CARGO_BIN_EXE_ucan-gateway");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    assert!(
        run(&["key", "generate", "-o", key.to_str().unwrap()])
            .status
            .success()
    );
    let to = ucan_gateway::did::SigningKey::generate(ucan_gateway::did::KeyAlg::Ed25519).did();
    let made = run(&[
        "delegate",
        "--key",
        key.to_str().unwrap(),
        "--to",
        &to,
        "--cmd",
        "/wasm/run",
        "--quota",
        "100/1h",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let envelope = ucan_gateway::ucan::envelope::Envelope::decode(&bytes).unwrap();
    let dlg = Delegation::from_envelope(envelope).unwrap();
    assert_eq!(
        Quota::of(&dlg),
        Ok(Some(Quota {
            invocations: Some(100),
            fuel: None,
            cpu_seconds: None,
            jobs: None,
            per: 3600
        }))
    );
    // Several resources over one window, each in its own option.
    let made = run(&[
        "delegate",
        "--key",
        key.to_str().unwrap(),
        "--to",
        &to,
        "--cmd",
        "/wasm/run",
        "--quota",
        "fuel=5000000/1d",
        "--quota",
        "cpu_seconds=600/24h",
        "--quota",
        "jobs=0/1d",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let envelope = ucan_gateway::ucan::envelope::Envelope::decode(&std::fs::read(&out).unwrap());
    let dlg = Delegation::from_envelope(envelope.unwrap()).unwrap();
    assert_eq!(
        Quota::of(&dlg),
        Ok(Some(Quota {
            invocations: None,
            fuel: Some(5_000_000),
            cpu_seconds: Some(600),
            jobs: Some(0),
            per: 86_400
        }))
    );
    for bad in [
        &["100"][..],
        &["x/1h"],
        &["-1/1h"],
        &["5/0s"],
        &["5/forever"],
        &["gpus=1/1h"],
        &["fuel=1.5/1h"],
        &["fuel=1/1h", "jobs=1/1d"],
        &["fuel=1/1h", "fuel=2/1h"],
        &["5/1h", "invocations=6/1h"],
    ] {
        let mut args = vec![
            "delegate",
            "--key",
            key.to_str().unwrap(),
            "--to",
            &to,
            "--cmd",
            "/wasm/run",
        ];
        let options: Vec<String> = bad.iter().map(|q| format!("--quota={q}")).collect();
        args.extend(options.iter().map(String::as_str));
        let refused = run(&args);
        assert_eq!(refused.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("--quota"),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_destructive_task_is_charged_once_with_its_intent() {
    let dir = tempfile::tempdir().unwrap();
    let w = metered(Some((2, "1h")), None);
    let route =
        "[[route]]\ncommand = \"/wasm/once\"\nbackend = \"wasm\"\neffect = \"destructive\"\n";
    let gw = gateway(dir.path(), &w.operator, route).await;
    let by_app = |n: i128| {
        ucan_gateway::ucan::invocation::InvocationBuilder::new(
            w.operator.did(),
            Command::parse("/wasm/once").unwrap(),
            add_args(wasm(ADD_WAT), n, n),
        )
        .audience(gw.did.clone())
        .proofs(vec![w.chain[0].cid()])
        .expires(Some(unix_now() + 300))
        .sign(&w.app)
        .unwrap()
    };
    for n in 0..2 {
        let r = receipt(&gw, container(&by_app(n), &w.chain[..1])).await;
        assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    }
    super::gateway::refused(
        &gw,
        container(&by_app(2), &w.chain[..1]),
        429,
        "QuotaExceeded",
    )
    .await;
    gw.stop().await.unwrap();
}
