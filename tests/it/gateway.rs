//! The gateway over real HTTP on loopback: started with the same code as `ucan-gateway serve`, driven
//! with a plain HTTP client, every receipt checked against the gateway's DID.

use std::collections::BTreeMap;
use std::path::Path;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::{Running, ServeArgs, StoreArgs, start};
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::receipt::{Out, Receipt};
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Delegation, Invocation, Policy};

pub(crate) const ADD_WAT: &str = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#;
pub(crate) const SPIN_WAT: &str = r#"(module (func (export "spin") (loop br 0)))"#;
const GROW_WAT: &str = r#"(module (memory 1) (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))"#;
const TRAP_WAT: &str = r#"(module (func (export "boom") unreachable))"#;

pub(crate) fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap()
}

/// A gateway whose operator is `operator`, in `dir`.
pub(crate) async fn gateway(dir: &Path, operator: &SigningKey, extra_policy: &str) -> Running {
    gateway_with(dir, operator, "", extra_policy).await
}

/// A gateway with extra keys in its `/wasm/run` route and extra policy text after the routes.
pub(crate) async fn gateway_with(
    dir: &Path,
    operator: &SigningKey,
    wasm_route: &str,
    extra_policy: &str,
) -> Running {
    let policy = write_policy(dir, operator, wasm_route, extra_policy);
    serve_policy(dir, policy).await
}

/// Writes the policy of [`gateway_with`] into `dir`.
pub(crate) fn write_policy(
    dir: &Path,
    operator: &SigningKey,
    wasm_route: &str,
    extra_policy: &str,
) -> std::path::PathBuf {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
subjects = ["{}"]
max_body = "1MiB"
[limits]
fuel = 10_000_000
memory = "16MiB"
timeout = "2s"
[[route]]
command = "/wasm/run"
backend = "wasm"
effect = "pure"
{wasm_route}
[[route]]
command = "/blob/put"
backend = "blob"
effect = "nondestructive"
{extra_policy}
"#,
            operator.did()
        ),
    )
    .unwrap();
    policy
}

/// A gateway serving the policy file `policy`, with its data in `dir`, on a free loopback port.
pub(crate) async fn serve_policy(dir: &Path, policy: std::path::PathBuf) -> Running {
    serve_policy_with(dir, policy, Default::default()).await
}

/// [`serve_policy`] with these HTTP edge settings.
pub(crate) async fn serve_policy_with(
    dir: &Path,
    policy: std::path::PathBuf,
    http: ucan_gateway::cli::serve::HttpArgs,
) -> Running {
    serve_policy_on(dir, policy, http, StoreArgs::default()).await
}

/// The store for replicas of one test to share: a fresh schema of the PostgreSQL test server when
/// there is one (read again only on announcements, as `--store-refresh 60` leaves it), else the
/// SQLite file in the data directory the replicas share.
pub(crate) async fn replica_store() -> StoreArgs {
    match crate::support::postgres::postgres_url("replicas over PostgreSQL; over SQLite instead") {
        Some(base) => StoreArgs {
            url: Some(crate::support::postgres::fresh_schema(&base).await),
            store_refresh: std::time::Duration::from_secs(60),
            ..StoreArgs::default()
        },
        None => StoreArgs::default(),
    }
}

/// [`serve_policy_with`] over `store`.
pub(crate) async fn serve_policy_on(
    dir: &Path,
    policy: std::path::PathBuf,
    http: ucan_gateway::cli::serve::HttpArgs,
    store: StoreArgs,
) -> Running {
    start(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        worker_threads: None,
        data_dir: dir.to_path_buf(),
        key: None,
        policy: Some(policy),
        modules: None,
        leeway: 60,
        bacalhau: None,
        log_format: ucan_gateway::cli::serve::LogFormat::Text,
        http,
        store,
    })
    .await
    .unwrap()
}

/// Operator → app → friend, the friend holding `/wasm/run` limited to `add` by the app's policy.
pub(crate) struct World {
    pub(crate) operator: SigningKey,
    pub(crate) app: SigningKey,
    pub(crate) friend: SigningKey,
    pub(crate) chain: Vec<Delegation>,
}

pub(crate) fn world() -> World {
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let app = SigningKey::generate(KeyAlg::P256);
    let friend = SigningKey::generate(KeyAlg::Secp256k1);
    let exp = Some(unix_now() + 3600);
    let root = DelegationBuilder::new(
        app.did(),
        Some(operator.did()),
        Command::parse("/").unwrap(),
    )
    .expires(exp)
    .sign(&operator)
    .unwrap();
    let leaf = DelegationBuilder::new(
        friend.did(),
        Some(operator.did()),
        Command::parse("/wasm/run").unwrap(),
    )
    .policy(Policy::from_json(r#"[["==", ".func", "add"]]"#).unwrap())
    .expires(exp)
    .sign(&app)
    .unwrap();
    World {
        operator,
        app,
        friend,
        chain: vec![root, leaf],
    }
}

pub(crate) fn args(pairs: Vec<(&str, Ipld)>) -> BTreeMap<String, Ipld> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(crate) fn add_args(module: Vec<u8>, a: i128, b: i128) -> BTreeMap<String, Ipld> {
    args(vec![
        ("module", Ipld::Bytes(module)),
        ("func", Ipld::String("add".into())),
        ("args", Ipld::List(vec![Ipld::Integer(a), Ipld::Integer(b)])),
    ])
}

pub(crate) fn container(inv: &Invocation, proofs: &[Delegation]) -> Vec<u8> {
    let mut c = Container::default();
    c.tokens.push(inv.bytes().to_vec());
    c.tokens.extend(proofs.iter().map(|d| d.bytes().to_vec()));
    c.encode(Format::Raw)
}

pub(crate) fn invoke(w: &World, gw: &Running, cmd: &str, a: BTreeMap<String, Ipld>) -> Invocation {
    InvocationBuilder::new(w.operator.did(), Command::parse(cmd).unwrap(), a)
        .audience(gw.did.clone())
        .proofs(w.chain.iter().map(|d| d.cid()).collect())
        .expires(Some(unix_now() + 300))
        .sign(&w.friend)
        .unwrap()
}

pub(crate) async fn post(gw: &Running, body: Vec<u8>) -> (u16, Vec<u8>) {
    post_to(&gw.addr.to_string(), body).await
}

/// Posts `body` to `POST /` of the gateway at `addr`: the status and the body of the answer.
pub(crate) async fn post_to(addr: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Posts and expects a verified receipt.
pub(crate) async fn receipt(gw: &Running, body: Vec<u8>) -> Receipt {
    let (status, bytes) = post(gw, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let tokens = Container::decode(&bytes).unwrap().tokens;
    let receipt = Receipt::decode(&tokens[0]).unwrap();
    receipt
        .verify(Some(&gw.did))
        .expect("receipt signed by the gateway");
    receipt
}

/// Posts and expects a refusal with this status and error name.
pub(crate) async fn refused(gw: &Running, body: Vec<u8>, status: u16, name: &str) {
    let (got, bytes) = post(gw, body).await;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)));
    assert_eq!(
        (got, json["error"]["name"].as_str().unwrap_or("")),
        (status, name),
        "{json}"
    );
}

pub(crate) fn error_name(r: &Receipt) -> &str {
    match &r.body.out {
        Out::Error { name, .. } => name,
        Out::Ok(v) => panic!("expected an error receipt, got ok {v:?}"),
    }
}

#[tokio::test]
async fn full_path_third_party_invocation_gets_a_verified_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;

    let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 2, 40));
    let r = receipt(&gw, container(&inv, &w.chain)).await;
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(42)));
    assert_eq!(r.body.ran, inv.cid());
    assert_eq!(r.body.task, inv.payload.task_id());

    // The receipt is stored: by invocation CID and by task id.
    for cid in [inv.cid(), inv.payload.task_id()] {
        let got = reqwest::get(format!("http://{}/receipts/{cid}", gw.addr))
            .await
            .unwrap();
        assert_eq!(got.status().as_u16(), 200);
        let tokens = Container::decode(&got.bytes().await.unwrap())
            .unwrap()
            .tokens;
        assert_eq!(Receipt::decode(&tokens[0]).unwrap().cid(), r.cid());
    }
    let missing = reqwest::get(format!("http://{}/receipts/{}", gw.addr, w.chain[0].cid()))
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    // Service description, health and metrics.
    let desc = reqwest::get(format!("http://{}/", gw.addr))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let desc: serde_json::Value = serde_json::from_slice(&desc).unwrap();
    assert_eq!(desc["did"], gw.did.as_str());
    let health = reqwest::get(format!("http://{}/health", gw.addr))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let metrics = reqwest::get(format!("http://{}/metrics", gw.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"ucan_gateway_invocations_total{command="/wasm/run",outcome="ok"} 1"#),
        "{metrics}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn authorization_failures_answer_without_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let module = wasm(ADD_WAT);

    // Bad signature: 401.
    let inv = invoke(&w, &gw, "/wasm/run", add_args(module.clone(), 1, 2));
    let mut bytes = inv.bytes().to_vec();
    bytes[10] ^= 1;
    let mut c = Container::default();
    c.tokens.push(bytes);
    c.tokens.extend(w.chain.iter().map(|d| d.bytes().to_vec()));
    refused(&gw, c.encode(Format::Raw), 401, "InvalidSignature").await;

    // Policy violated (func is not add): 403 MatchError.
    let mut a = add_args(module.clone(), 1, 2);
    a.insert("func".into(), Ipld::String("mul".into()));
    refused(
        &gw,
        container(&invoke(&w, &gw, "/wasm/run", a), &w.chain),
        403,
        "MatchError",
    )
    .await;

    // Missing proof, neither sent nor kept (refused invocations keep none): 510 UnavailableProof.
    let inv = invoke(&w, &gw, "/wasm/run", add_args(module.clone(), 1, 2));
    refused(&gw, container(&inv, &w.chain[..1]), 510, "UnavailableProof").await;

    // Addressed to someone else: 403 InvalidAudience.
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(module.clone(), 1, 2),
    )
    .audience(w.app.did())
    .proofs(w.chain.iter().map(|d| d.cid()).collect())
    .expires(Some(unix_now() + 300))
    .sign(&w.friend)
    .unwrap();
    refused(&gw, container(&inv, &w.chain), 403, "InvalidAudience").await;

    // A subject the operator does not serve: 403 InvalidSubject.
    let stranger = SigningKey::generate(KeyAlg::Ed25519);
    let inv = InvocationBuilder::new(
        stranger.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(module.clone(), 1, 2),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&stranger)
    .unwrap();
    refused(&gw, container(&inv, &[]), 403, "InvalidSubject").await;

    // Expired invocation: 403 Expired.
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(module.clone(), 1, 2),
    )
    .audience(gw.did.clone())
    .proofs(w.chain.iter().map(|d| d.cid()).collect())
    .expires(Some(unix_now() - 3600))
    .sign(&w.friend)
    .unwrap();
    refused(&gw, container(&inv, &w.chain), 403, "Expired").await;

    // No expiry, on a route that requires one: 403 MissingExpiry.
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(module.clone(), 1, 2),
    )
    .audience(gw.did.clone())
    .proofs(w.chain.iter().map(|d| d.cid()).collect())
    .sign(&w.friend)
    .unwrap();
    refused(&gw, container(&inv, &w.chain), 403, "MissingExpiry").await;

    // A command with no route: 404.
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/nothing/here").unwrap(),
        BTreeMap::new(),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    refused(&gw, container(&inv, &[]), 404, "UnknownCommand").await;

    // Undecodable body: 400; too large: 413.
    refused(&gw, b"hello".to_vec(), 400, "MalformedContainer").await;
    refused(&gw, vec![b'@'; 10 * 1024 * 1024], 413, "PayloadTooLarge").await;

    // None of these consumed anything: the honest invocation still runs.
    let inv = invoke(&w, &gw, "/wasm/run", add_args(module, 1, 2));
    assert_eq!(
        receipt(&gw, container(&inv, &w.chain)).await.body.out,
        Out::Ok(Ipld::Integer(3))
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn replays_are_refused_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 1, 1));
    let body = container(&inv, &w.chain);
    receipt(&gw, body.clone()).await;
    refused(&gw, body.clone(), 409, "Replayed").await;
    gw.stop().await.unwrap();

    let gw = gateway(dir.path(), &w.operator, "").await;
    refused(&gw, body, 409, "Replayed").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn revoked_delegations_are_refused_and_stay_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let leaf = &w.chain[1];

    // A stranger cannot revoke the app's delegation.
    let stranger = SigningKey::generate(KeyAlg::Ed25519);
    let revoke = |by: &SigningKey| {
        InvocationBuilder::new(
            w.operator.did(),
            Command::parse("/ucan/revoke").unwrap(),
            args(vec![("revoke", Ipld::Link(leaf.cid()))]),
        )
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300))
        .sign(by)
        .unwrap()
    };
    refused(
        &gw,
        container(&revoke(&stranger), &w.chain),
        403,
        "InvalidClaim",
    )
    .await;

    // The app, its issuer, can.
    let r = receipt(&gw, container(&revoke(&w.app), &w.chain)).await;
    assert!(r.body.out.is_ok());
    let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 1, 2));
    refused(&gw, container(&inv, &w.chain), 403, "Revoked").await;
    gw.stop().await.unwrap();

    let gw = gateway(dir.path(), &w.operator, "").await;
    let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 1, 2));
    refused(&gw, container(&inv, &w.chain), 403, "Revoked").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn wasm_limits_and_traps_become_error_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    // The friend's delegation only allows `add`; the operator invokes directly for these.
    let gw = gateway(dir.path(), &w.operator, "").await;
    let run = |module: Vec<u8>, func: &str, a: Vec<Ipld>, meta: Option<BTreeMap<String, Ipld>>| {
        let mut b = InvocationBuilder::new(
            w.operator.did(),
            Command::parse("/wasm/run").unwrap(),
            args(vec![
                ("module", Ipld::Bytes(module)),
                ("func", Ipld::String(func.into())),
                ("args", Ipld::List(a)),
            ]),
        )
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300));
        if let Some(meta) = meta {
            b = b.meta(meta);
        }
        container(&b.sign(&w.operator).unwrap(), &[])
    };
    let config =
        |pairs: Vec<(&str, Ipld)>| Some(args(vec![("ipvm/config", Ipld::Map(args(pairs)))]));

    // Fuel: the route's 10M runs out on an endless loop.
    let r = receipt(&gw, run(wasm(SPIN_WAT), "spin", vec![], None)).await;
    assert_eq!(error_name(&r), "OutOfFuel");
    // Timeout: plenty of fuel asked for is capped by the route, so ask for less time instead.
    let r = receipt(
        &gw,
        run(
            wasm(SPIN_WAT),
            "spin",
            vec![],
            config(vec![("timeout", Ipld::Integer(50))]),
        ),
    )
    .await;
    assert!(
        matches!(error_name(&r), "Timeout" | "OutOfFuel"),
        "{:?}",
        r.body.out
    );
    // Memory: 16 MiB route limit; growing by 512 pages (32 MiB) fails, by 1 page succeeds.
    let r = receipt(
        &gw,
        run(wasm(GROW_WAT), "grow", vec![Ipld::Integer(512)], None),
    )
    .await;
    assert_eq!(error_name(&r), "MemoryLimit");
    let r = receipt(
        &gw,
        run(wasm(GROW_WAT), "grow", vec![Ipld::Integer(1)], None),
    )
    .await;
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(1)));
    // A trap.
    let r = receipt(&gw, run(wasm(TRAP_WAT), "boom", vec![], None)).await;
    assert_eq!(error_name(&r), "Trap");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn pure_work_is_memoized_and_blobs_can_be_linked() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let first = receipt(
        &gw,
        container(
            &invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 5, 6)),
            &w.chain,
        ),
    )
    .await;
    assert!(!first.body.meta.contains_key("gateway/memoized"));

    // The same work with another nonce is answered from the store, pointing at the first receipt.
    let second = receipt(
        &gw,
        container(
            &invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 5, 6)),
            &w.chain,
        ),
    )
    .await;
    assert_eq!(second.body.out, Out::Ok(Ipld::Integer(11)));
    assert_eq!(
        second.body.meta.get("gateway/memoized"),
        Some(&Ipld::Link(first.cid()))
    );

    // Upload the module, then run it by link: same work id as inline bytes, so memoized as well.
    let put = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/blob/put").unwrap(),
        args(vec![("bytes", Ipld::Bytes(wasm(ADD_WAT)))]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    let stored = receipt(&gw, container(&put, &[])).await;
    let Out::Ok(Ipld::Map(ok)) = &stored.body.out else {
        panic!("{:?}", stored.body.out)
    };
    let Some(Ipld::Link(module)) = ok.get("cid") else {
        panic!("{ok:?}")
    };
    let mut linked = add_args(vec![], 5, 6);
    linked.insert("module".into(), Ipld::Link(*module));
    let third = receipt(
        &gw,
        container(&invoke(&w, &gw, "/wasm/run", linked), &w.chain),
    )
    .await;
    assert_eq!(third.body.out, Out::Ok(Ipld::Integer(11)));
    assert_eq!(
        third.body.meta.get("gateway/memoized"),
        Some(&Ipld::Link(first.cid()))
    );
    gw.stop().await.unwrap();
}

/// A WASI command module that writes "hi\n" to stdout and exits with status 3.
const WASI_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $proc_exit (i32.const 3))))"#;

#[tokio::test]
async fn bearer_json_wasi_admission_and_input_limits() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(
        dir.path(),
        &w.operator,
        "admission = '[[\"<=\", \".args[0]\", 100]]'\n[route.limits]\nmax_input = \"2KiB\"",
        "[[route]]\ncommand = \"/wasi/run\"\nbackend = \"wasi\"\neffect = \"pure\"",
    )
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/", gw.addr);

    // The container in a Bearer header, answered as JSON for people.
    let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 20, 22));
    let mut c = Container::default();
    c.tokens.push(inv.bytes().to_vec());
    c.tokens.extend(w.chain.iter().map(|d| d.bytes().to_vec()));
    let response = http
        .post(&url)
        .header(
            "authorization",
            format!(
                "Bearer {}",
                String::from_utf8(c.encode(Format::Base64Url)).unwrap()
            ),
        )
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(json["receipt"]["out"]["ok"], 42, "{json}");
    assert_eq!(json["receipt"]["ran"], inv.cid().to_string());

    // The operator's admission rule applies on top of the chain: args[0] <= 100.
    let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), 101, 1));
    refused(&gw, container(&inv, &w.chain), 403, "MatchError").await;

    // The route's input cap: 2 KiB of arguments.
    let mut big = add_args(wasm(ADD_WAT), 1, 1);
    big.insert("padding".into(), Ipld::Bytes(vec![0; 4096]));
    refused(
        &gw,
        container(&invoke(&w, &gw, "/wasm/run", big), &w.chain),
        413,
        "InputTooLarge",
    )
    .await;

    // WASI: stdout and the exit code come back in the receipt.
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasi/run").unwrap(),
        args(vec![("module", Ipld::Bytes(wasm(WASI_WAT)))]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    let r = receipt(&gw, container(&inv, &[])).await;
    let Out::Ok(Ipld::Map(ok)) = &r.body.out else {
        panic!("{:?}", r.body.out)
    };
    assert_eq!(ok.get("exit_code"), Some(&Ipld::Integer(3)));
    assert_eq!(ok.get("stdout"), Some(&Ipld::Bytes(b"hi\n".to_vec())));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn preloaded_modules_run_by_cid_and_shutdown_finishes_in_flight_work() {
    let dir = tempfile::tempdir().unwrap();
    let modules = dir.path().join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(modules.join("add.wasm"), wasm(ADD_WAT)).unwrap();
    std::fs::write(modules.join("spin.wasm"), wasm(SPIN_WAT)).unwrap();
    std::fs::write(modules.join("notes.txt"), b"not a module").unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "subjects = [\"{}\"]\n[limits]\nfuel = 100_000_000_000\ntimeout = \"1s\"\n[[route]]\ncommand = \"/wasm/run\"\nbackend = \"wasm\"\neffect = \"pure\"\n",
            operator.did()
        ),
    )
    .unwrap();
    let gw = start(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        worker_threads: None,
        data_dir: dir.path().join("data"),
        key: None,
        policy: Some(policy),
        modules: Some(modules),
        leeway: 60,
        bacalhau: None,
        log_format: ucan_gateway::cli::serve::LogFormat::Text,
        http: Default::default(),
        store: Default::default(),
    })
    .await
    .unwrap();
    let call = |module: &[u8], func: &str, a: Vec<Ipld>| {
        let link = ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, module);
        let inv = InvocationBuilder::new(
            operator.did(),
            Command::parse("/wasm/run").unwrap(),
            args(vec![
                ("module", Ipld::Link(link)),
                ("func", Ipld::String(func.into())),
                ("args", Ipld::List(a)),
            ]),
        )
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300))
        .sign(&operator)
        .unwrap();
        container(&inv, &[])
    };

    // A preloaded module is named by its raw CID.
    let r = receipt(
        &gw,
        call(
            &wasm(ADD_WAT),
            "add",
            vec![Ipld::Integer(1), Ipld::Integer(2)],
        ),
    )
    .await;
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(3)));

    // A task that runs into its one-second timeout is still answered when shutdown starts meanwhile.
    let url = format!("http://{}/", gw.addr);
    let body = call(&wasm(SPIN_WAT), "spin", vec![]);
    let in_flight =
        tokio::spawn(async move { reqwest::Client::new().post(url).body(body).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gw.stop().await.unwrap();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status().as_u16(), 200);
    let tokens = Container::decode(&response.bytes().await.unwrap())
        .unwrap()
        .tokens;
    assert_eq!(error_name(&Receipt::decode(&tokens[0]).unwrap()), "Timeout");
}
