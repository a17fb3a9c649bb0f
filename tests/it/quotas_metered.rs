//! Delegation quotas on what runs consume, over real HTTP: fuel and run time are charged after the
//! run (the run that crosses a limit finishes, the next is refused with 429 `QuotaExceeded` naming
//! the delegation and the resource), memo hits consume nothing, a refusal consumes nothing, windows
//! roll over, replicas sharing a store share the counts, and Bacalhau jobs are counted when
//! submitted and their run time when they end (in the request, or later by the watcher).

use std::collections::BTreeMap;
use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::exec::wasm::{Limits, WasmEngine};
use ucan_gateway::gateway::QUOTA_META;
use ucan_gateway::ipld::{RAW, cid_for};
use ucan_gateway::receipt::{META_FUEL, META_MEMOIZED, Receipt};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Delegation, Invocation};

use super::gateway::{
    args, container, gateway, receipt, refused, replica_store, serve_policy, serve_policy_on,
    write_policy,
};
use crate::support::fake_bacalhau::FakeBacalhau;

/// `add(a, n)` counts `n` down to zero and returns `a`: the fuel it burns grows with `n` and is the
/// same on every run; the result is pure, so a second run of the same work is a memo hit.
const BURN_WAT: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
  (block (loop
    (br_if 1 (i32.eqz (local.get 1)))
    (local.set 1 (i32.sub (local.get 1) (i32.const 1)))
    (br 0)))
  local.get 0))"#;
/// `add` that never returns: it runs until its deadline.
const SPIN_WAT: &str =
    r#"(module (func (export "add") (param i32 i32) (result i32) (loop br 0) unreachable))"#;
/// How long `burn` counts down.
const BURN: i128 = 20_000;

/// The fuel one run of `burn(a, BURN)` takes, measured on an engine like the gateway's.
fn burn_fuel() -> u64 {
    let bytes = wat::parse_str(BURN_WAT).unwrap();
    let limits = Limits {
        fuel: 10_000_000,
        memory_bytes: 16 << 20,
        timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let outcome = WasmEngine::new()
        .unwrap()
        .run_core(
            &cid_for(RAW, &bytes),
            &bytes,
            "add",
            &[Ipld::Integer(1), Ipld::Integer(BURN)],
            limits,
        )
        .unwrap();
    assert_eq!(outcome.value(), Some(&Ipld::Integer(1)));
    outcome.fuel_used()
}

/// A `meta` with the quota `pairs` (limits and `per`).
fn quota(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    let map = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    BTreeMap::from([(QUOTA_META.to_owned(), Ipld::Map(map))])
}

fn int(n: u64) -> Ipld {
    Ipld::Integer(n.into())
}

fn per(text: &str) -> Ipld {
    Ipld::String(text.to_owned())
}

/// Operator → app (`/`, the root) → friend (`/wasm/run`, the leaf), each with an optional quota.
struct Chain {
    operator: SigningKey,
    app: SigningKey,
    friend: SigningKey,
    root: Delegation,
    leaf: Delegation,
}

fn chain(root: Option<BTreeMap<String, Ipld>>, leaf: Option<BTreeMap<String, Ipld>>) -> Chain {
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let app = SigningKey::generate(KeyAlg::Ed25519);
    let friend = SigningKey::generate(KeyAlg::Ed25519);
    let exp = Some(unix_now() + 3600);
    let mut r = DelegationBuilder::new(app.did(), Some(operator.did()), cmd("/")).expires(exp);
    if let Some(meta) = root {
        r = r.meta(meta);
    }
    let mut l =
        DelegationBuilder::new(friend.did(), Some(operator.did()), cmd("/wasm/run")).expires(exp);
    if let Some(meta) = leaf {
        l = l.meta(meta);
    }
    Chain {
        root: r.sign(&operator).unwrap(),
        leaf: l.sign(&app).unwrap(),
        operator,
        app,
        friend,
    }
}

fn cmd(c: &str) -> Command {
    Command::parse(c).unwrap()
}

/// `/wasm/run` of `wat`'s `add(a, b)` by the friend through the whole chain, with `meta`.
fn by_friend(
    c: &Chain,
    gw: &Running,
    wat: &str,
    a: i128,
    b: i128,
    meta: &[(&str, Ipld)],
) -> Vec<u8> {
    let inv = invocation(&c.operator.did(), gw, wat, a, b, meta)
        .proofs(vec![c.root.cid(), c.leaf.cid()])
        .sign(&c.friend)
        .unwrap();
    container(&inv, &[c.root.clone(), c.leaf.clone()])
}

/// The same by the app, through the root alone.
fn by_app(c: &Chain, gw: &Running, wat: &str, a: i128, b: i128) -> Vec<u8> {
    let inv = invocation(&c.operator.did(), gw, wat, a, b, &[])
        .proofs(vec![c.root.cid()])
        .sign(&c.app)
        .unwrap();
    container(&inv, std::slice::from_ref(&c.root))
}

fn invocation(
    sub: &str,
    gw: &Running,
    wat: &str,
    a: i128,
    b: i128,
    meta: &[(&str, Ipld)],
) -> InvocationBuilder {
    let module = Ipld::Bytes(wat::parse_str(wat).unwrap());
    let a = args(vec![
        ("module", module),
        ("func", Ipld::String("add".into())),
        ("args", Ipld::List(vec![Ipld::Integer(a), Ipld::Integer(b)])),
    ]);
    let mut builder = InvocationBuilder::new(sub.to_owned(), cmd("/wasm/run"), a)
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300));
    if !meta.is_empty() {
        let config = meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        builder = builder.meta(BTreeMap::from([(
            "ipvm/config".to_owned(),
            Ipld::Map(config),
        )]));
    }
    builder
}

/// Posts `body` and expects 429 `QuotaExceeded` naming `delegation` and `resource`, with a
/// `Retry-After` within `window` seconds; gives the message.
async fn exceeded(
    gw: &Running,
    body: Vec<u8>,
    delegation: &Delegation,
    resource: &str,
    window: u64,
) -> String {
    let response = reqwest::Client::new()
        .post(format!("http://{}/", gw.addr))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry: Option<u64> = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (429, Some("QuotaExceeded")),
        "{json}"
    );
    let message = json["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&delegation.cid().to_string()), "{message}");
    assert!(
        message.contains(&format!(" {resource} per window")),
        "{message}"
    );
    let retry = retry.expect("Retry-After");
    assert!((1..=window).contains(&retry), "{retry}");
    message
}

fn fuel_of(r: &Receipt) -> Option<&Ipld> {
    r.body.meta.get(META_FUEL)
}

#[tokio::test]
async fn a_fuel_quota_lets_runs_through_until_their_fuel_reaches_it_and_memo_hits_are_free() {
    let fuel = burn_fuel();
    let dir = tempfile::tempdir().unwrap();
    let c = chain(
        None,
        Some(quota(&[
            ("fuel", int(2 * fuel + fuel / 2)),
            ("per", per("1h")),
        ])),
    );
    let gw = gateway(dir.path(), &c.operator, "").await;

    let first = receipt(&gw, by_friend(&c, &gw, BURN_WAT, 1, BURN, &[])).await;
    assert_eq!(
        fuel_of(&first),
        Some(&int(fuel)),
        "the gateway's engine burns the same"
    );
    // The same work again is answered from the first run: no fuel is burnt, none is counted.
    for _ in 0..3 {
        let again = receipt(&gw, by_friend(&c, &gw, BURN_WAT, 1, BURN, &[])).await;
        assert!(
            again.body.meta.contains_key(META_MEMOIZED),
            "{:?}",
            again.body.meta
        );
    }
    // A second run, and its replay, which is refused and runs nothing.
    let replay = by_friend(&c, &gw, BURN_WAT, 9, BURN, &[]);
    receipt(&gw, replay.clone()).await;
    refused(&gw, replay, 409, "Replayed").await;
    // Two runs' fuel used of two and a half: the third run is let through and crosses the limit.
    receipt(&gw, by_friend(&c, &gw, BURN_WAT, 3, BURN, &[])).await;
    let message = exceeded(
        &gw,
        by_friend(&c, &gw, BURN_WAT, 4, BURN, &[]),
        &c.leaf,
        "fuel",
        3600,
    )
    .await;
    assert!(
        message.contains(&format!("has used {}", 3 * fuel)),
        "{message}"
    );
    // Nor is a memo hit let through once the fuel is used up: the delegation proves nothing more
    // in this window.
    exceeded(
        &gw,
        by_friend(&c, &gw, BURN_WAT, 1, BURN, &[]),
        &c.leaf,
        "fuel",
        3600,
    )
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_refusal_for_one_quota_counts_against_no_other() {
    let fuel = burn_fuel();
    let dir = tempfile::tempdir().unwrap();
    let c = chain(
        Some(quota(&[("invocations", int(4)), ("per", per("1h"))])),
        Some(quota(&[("fuel", int(fuel + fuel / 2)), ("per", per("1h"))])),
    );
    let gw = gateway(dir.path(), &c.operator, "").await;
    receipt(&gw, by_friend(&c, &gw, BURN_WAT, 1, BURN, &[])).await;
    receipt(&gw, by_friend(&c, &gw, BURN_WAT, 2, BURN, &[])).await;
    for a in 3..6 {
        exceeded(
            &gw,
            by_friend(&c, &gw, BURN_WAT, a, BURN, &[]),
            &c.leaf,
            "fuel",
            3600,
        )
        .await;
    }
    // The root counted two invocations, not the three refused: two are left for the app.
    receipt(&gw, by_app(&c, &gw, BURN_WAT, 7, 1)).await;
    receipt(&gw, by_app(&c, &gw, BURN_WAT, 8, 1)).await;
    exceeded(
        &gw,
        by_app(&c, &gw, BURN_WAT, 9, 1),
        &c.root,
        "invocations",
        3600,
    )
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_run_time_quota_refuses_once_the_runs_have_taken_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = chain(
        None,
        Some(quota(&[("cpu_seconds", int(1)), ("per", per("1h"))])),
    );
    // Fuel enough to spin until the deadline.
    let fuel = "[route.limits]\nfuel = 1_000_000_000_000\n";
    let gw = super::gateway::gateway_with(dir.path(), &c.operator, fuel, "").await;
    // Each run spins until its 600 ms deadline: the first leaves time, the second crosses.
    let spin = |a| by_friend(&c, &gw, SPIN_WAT, a, 0, &[("timeout", int(600))]);
    for a in 0..2 {
        let r = receipt(&gw, spin(a)).await;
        assert_eq!(super::gateway::error_name(&r), "Timeout");
    }
    let message = exceeded(&gw, spin(2), &c.leaf, "cpu_seconds", 3600).await;
    assert!(message.contains("allows 1 cpu_seconds"), "{message}");
    // A quick run would have fitted: it is refused all the same.
    exceeded(
        &gw,
        by_friend(&c, &gw, BURN_WAT, 1, 1, &[]),
        &c.leaf,
        "cpu_seconds",
        3600,
    )
    .await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_fuel_window_rolls_over() {
    let fuel = burn_fuel();
    let dir = tempfile::tempdir().unwrap();
    let c = chain(
        None,
        Some(quota(&[("fuel", int(fuel)), ("per", per("2s"))])),
    );
    let gw = gateway(dir.path(), &c.operator, "").await;
    // Start just after a window opens, so the first two requests share it.
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 2000;
    tokio::time::sleep(Duration::from_millis((2000 - into as u64) + 50)).await;
    receipt(&gw, by_friend(&c, &gw, BURN_WAT, 1, BURN, &[])).await;
    exceeded(
        &gw,
        by_friend(&c, &gw, BURN_WAT, 2, BURN, &[]),
        &c.leaf,
        "fuel",
        2,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    receipt(&gw, by_friend(&c, &gw, BURN_WAT, 3, BURN, &[])).await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn replicas_sharing_a_store_share_the_fuel_counted() {
    let fuel = burn_fuel();
    let dir = tempfile::tempdir().unwrap();
    let c = chain(
        None,
        Some(quota(&[
            ("fuel", int(2 * fuel + fuel / 2)),
            ("per", per("1h")),
        ])),
    );
    // Two replicas over one store (PostgreSQL when the tests have one) and one key.
    let store = replica_store().await;
    let policy = write_policy(dir.path(), &c.operator, "", "");
    let a = serve_policy_on(
        dir.path(),
        policy.clone(),
        Default::default(),
        store.clone(),
    )
    .await;
    let b = serve_policy_on(dir.path(), policy, Default::default(), store).await;
    assert_eq!(a.did, b.did);
    for (n, gw) in [&a, &b, &a].into_iter().enumerate() {
        receipt(gw, by_friend(&c, gw, BURN_WAT, n as i128, BURN, &[])).await;
    }
    for gw in [&b, &a] {
        exceeded(
            gw,
            by_friend(&c, gw, BURN_WAT, 7, BURN, &[]),
            &c.leaf,
            "fuel",
            3600,
        )
        .await;
    }
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

/// A gateway forwarding `/docker/run` (with the effect class `effect`) to the fake at `url`.
async fn bacalhau_gateway(
    dir: &std::path::Path,
    operator: &SigningKey,
    url: &str,
    effect: &str,
) -> Running {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "subjects = [\"{}\"]\n[[bacalhau]]\nname = \"net\"\nurl = \"{url}\"\nwait = \"5s\"\n\
             [[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"{effect}\"\n\
             [route.limits]\nmemory = \"2GiB\"\ntimeout = \"10m\"\n",
            operator.did()
        ),
    )
    .unwrap();
    serve_policy(dir, policy).await
}

/// `/docker/run` of a job that completes, by the app through the root alone.
fn job_by_app(c: &Chain, gw: &Running) -> Vec<u8> {
    let inv: Invocation = InvocationBuilder::new(
        c.operator.did(),
        cmd("/docker/run"),
        crate::bacalhau::args(r#"{"image": "alpine:3", "outputs": {"/o": {}}}"#),
    )
    .audience(gw.did.clone())
    .proofs(vec![c.root.cid()])
    .expires(Some(unix_now() + 300))
    .sign(&c.app)
    .unwrap();
    container(&inv, std::slice::from_ref(&c.root))
}

#[tokio::test]
async fn a_jobs_quota_counts_each_job_once_when_it_is_submitted() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    for effect in ["nondestructive", "destructive"] {
        let dir = tempfile::tempdir().unwrap();
        let c = chain(Some(quota(&[("jobs", int(2)), ("per", per("1h"))])), None);
        let gw = bacalhau_gateway(dir.path(), &c.operator, &fake.url(), effect).await;
        let before = fake.job_count();
        // Answered at once, with the job still running: counted all the same.
        let (first, _) = crate::bacalhau::answer(&gw, job_by_app(&c, &gw), Some(0)).await;
        assert!(first.body.out.is_ok(), "{effect}: {:?}", first.body.out);
        let (second, _) = crate::bacalhau::answer(&gw, job_by_app(&c, &gw), None).await;
        assert!(second.body.out.is_ok(), "{effect}: {:?}", second.body.out);
        exceeded(&gw, job_by_app(&c, &gw), &c.root, "jobs", 3600).await;
        assert_eq!(
            fake.job_count() - before,
            2,
            "{effect}: the refused one submitted nothing"
        );
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_jobs_run_time_is_counted_when_it_ends_in_the_request_or_after_it() {
    // Each job runs for one step: the time its execution reports.
    let fake = FakeBacalhau::start(Duration::from_millis(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let c = chain(
        Some(quota(&[("cpu_seconds", int(1)), ("per", per("1h"))])),
        None,
    );
    let gw = bacalhau_gateway(dir.path(), &c.operator, &fake.url(), "nondestructive").await;
    // The first outlives its request: its run time is counted when the watcher stores its final
    // receipt.
    let (first, _) = crate::bacalhau::answer(&gw, job_by_app(&c, &gw), Some(0)).await;
    let join = first
        .body
        .fx
        .join
        .as_ref()
        .expect("a join effect")
        .task_id();
    let last =
        crate::bacalhau::stored_receipt(gw.addr, &gw.did, &join, Duration::from_secs(20)).await;
    assert!(last.body.out.is_ok(), "{:?}", last.body.out);
    // 0.6 s of 1: the second is let through, finishes in its request and crosses the limit.
    let (second, _) = crate::bacalhau::answer(&gw, job_by_app(&c, &gw), None).await;
    assert_eq!(
        crate::bacalhau::ok_map(&second).get("state"),
        Some(&Ipld::String("Completed".into()))
    );
    let message = exceeded(&gw, job_by_app(&c, &gw), &c.root, "cpu_seconds", 3600).await;
    assert!(message.contains("has used 1.200"), "{message}");
    assert_eq!(fake.job_count(), 2);
    gw.stop().await.unwrap();
}
