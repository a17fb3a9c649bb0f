//! The Bacalhau backend end to end: a real gateway (started as `serve` starts it) in front of the fake
//! Bacalhau on loopback, driven over HTTP. Covers forwarding and the submitted Job's contract,
//! results in receipts (directly and through the await effect), delegated limits on image and
//! resources, faults (down, slow, 5xx, 429, lost answers, failed jobs, timeouts, rejected specs)
//! and a gateway restart while a job runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;
use reqwest::Method;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ipld::from_dag_json;
use ucan_gateway::receipt::{Out, Receipt};
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Delegation, Invocation, Policy};

use crate::support::fake_bacalhau::{FakeBacalhau, Fault};
use crate::support::openapi::OpenApi;

/// A gateway in `dir` forwarding `/docker/run` and `/bacalhau/job/run` to the fake at `url`,
/// with a CPU cap of 2 cores, 2 GiB and 10 minutes, and a wait window of `wait`.
pub(crate) async fn gateway(dir: &Path, operator: &SigningKey, url: &str, wait: &str) -> Running {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
subjects = ["{}"]
[[bacalhau]]
name = "net"
url = "{url}"
wait = "{wait}"
[[route]]
command = "/docker/run"
backend = "net"
effect = "nondestructive"
[route.limits]
memory = "2GiB"
timeout = "10m"
[route.compute]
cpu = "2"
[[route]]
command = "/bacalhau/job/run"
backend = "net"
effect = "nondestructive"
[route.limits]
memory = "2GiB"
timeout = "10m"
"#,
            operator.did()
        ),
    )
    .unwrap();
    super::gateway::serve_policy(dir, policy).await
}

/// The operator, and a third party holding `/docker/run` under `policy`.
struct World {
    operator: SigningKey,
    friend: SigningKey,
    chain: Vec<Delegation>,
}

fn world(policy: &str) -> World {
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let friend = SigningKey::generate(KeyAlg::Ed25519);
    let leaf = DelegationBuilder::new(
        friend.did(),
        Some(operator.did()),
        Command::parse("/docker/run").unwrap(),
    )
    .policy(Policy::from_json(policy).unwrap())
    .expires(Some(unix_now() + 3600))
    .sign(&operator)
    .unwrap();
    World {
        operator,
        friend,
        chain: vec![leaf],
    }
}

pub(crate) fn args(json: &str) -> BTreeMap<String, Ipld> {
    match from_dag_json(json).unwrap() {
        Ipld::Map(m) => m,
        other => panic!("not a map: {other:?}"),
    }
}

/// An invocation by the operator itself (no delegation needed).
pub(crate) fn own(gw: &Running, operator: &SigningKey, cmd: &str, a: &str) -> Vec<u8> {
    let inv = InvocationBuilder::new(operator.did(), Command::parse(cmd).unwrap(), args(a))
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300))
        .sign(operator)
        .unwrap();
    container(&inv, &[])
}

fn by_friend(w: &World, gw: &Running, a: &str) -> Vec<u8> {
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/docker/run").unwrap(),
        args(a),
    )
    .audience(gw.did.clone())
    .proofs(w.chain.iter().map(|d| d.cid()).collect())
    .expires(Some(unix_now() + 300))
    .sign(&w.friend)
    .unwrap();
    container(&inv, &w.chain)
}

fn container(inv: &Invocation, proofs: &[Delegation]) -> Vec<u8> {
    let mut c = Container::default();
    c.tokens.push(inv.bytes().to_vec());
    c.tokens.extend(proofs.iter().map(|d| d.bytes().to_vec()));
    c.encode(Format::Raw)
}

/// Posts with an optional `Prefer: wait=N`; gives the status and the tokens (or the JSON error).
async fn post(gw: &Running, body: Vec<u8>, wait: Option<u64>) -> (u16, Vec<u8>) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{}/", gw.addr))
        .timeout(Duration::from_secs(30))
        .body(body);
    if let Some(wait) = wait {
        request = request.header("Prefer", format!("wait={wait}"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Posts and expects a receipt signed by the gateway, with the effect invocations after it.
pub(crate) async fn answer(
    gw: &Running,
    body: Vec<u8>,
    wait: Option<u64>,
) -> (Receipt, Vec<Invocation>) {
    let (status, bytes) = post(gw, body, wait).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    // A container's tokens are sorted bytewise: the receipt is the `/ucan/assert` one, wherever it is.
    let tokens = Container::decode(&bytes).unwrap().tokens;
    let mut receipts: Vec<Receipt> = tokens
        .iter()
        .filter_map(|t| Receipt::decode(t).ok())
        .collect();
    assert_eq!(receipts.len(), 1, "one receipt per answer");
    let receipt = receipts.remove(0);
    receipt.verify(Some(&gw.did)).unwrap();
    let effects = tokens
        .iter()
        .filter(|t| t.as_slice() != receipt.bytes())
        .map(|t| Invocation::decode(t).unwrap())
        .collect();
    (receipt, effects)
}

/// Polls `GET /receipts/{cid}` until it answers (or fails the test after `limit`).
pub(crate) async fn stored_receipt(
    gw_addr: std::net::SocketAddr,
    did: &str,
    cid: &cid::Cid,
    limit: Duration,
) -> Receipt {
    let started = Instant::now();
    loop {
        let response = reqwest::get(format!("http://{gw_addr}/receipts/{cid}"))
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let tokens = Container::decode(&response.bytes().await.unwrap())
                .unwrap()
                .tokens;
            let receipt = Receipt::decode(&tokens[0]).unwrap();
            receipt.verify(Some(did)).unwrap();
            return receipt;
        }
        assert!(
            started.elapsed() < limit,
            "no receipt for {cid} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn ok_map(r: &Receipt) -> &BTreeMap<String, Ipld> {
    match &r.body.out {
        Out::Ok(Ipld::Map(m)) => m,
        other => panic!("expected an ok map, got {other:?}"),
    }
}

fn error_of(r: &Receipt) -> (&str, &str, &BTreeMap<String, Ipld>) {
    match &r.body.out {
        Out::Error {
            name,
            message,
            details,
        } => (name, message, details),
        Out::Ok(v) => panic!("expected an error receipt, got ok {v:?}"),
    }
}

/// The published CID of the first execution of a completed job's result.
fn published_cid(out: &BTreeMap<String, Ipld>) -> cid::Cid {
    let Some(Ipld::List(executions)) = out.get("executions") else {
        panic!("no executions in {out:?}")
    };
    let Ipld::Map(first) = &executions[0] else {
        panic!()
    };
    let Some(Ipld::Map(published)) = first.get("published") else {
        panic!("nothing published in {first:?}")
    };
    assert_eq!(published.get("type"), Some(&Ipld::String("ipfs".into())));
    match published.get("cid") {
        Some(Ipld::Link(cid)) => *cid,
        other => panic!("the CID is not a link: {other:?}"),
    }
}

const DOCKER_ARGS: &str = r#"{"image": "alpine:3", "entrypoint": ["sh", "-c"], "parameters": ["echo hi > /outputs/x"],
    "env": {"GREETING": "hi"}, "workdir": "/work",
    "mounts": {"/inputs": {"/": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}},
    "outputs": {"/outputs": {}}, "resources": {"cpu": 1500, "memory": 1000000000, "timeout": 120}}"#;

#[tokio::test]
async fn docker_run_is_forwarded_and_the_receipt_carries_the_published_cid() {
    let fake = FakeBacalhau::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;

    let body = own(&gw, &operator, "/docker/run", DOCKER_ARGS);
    let (receipt, effects) = answer(&gw, body, None).await;
    assert!(
        effects.is_empty(),
        "finished inside the wait window: no await effect"
    );
    let out = ok_map(&receipt);
    assert_eq!(out.get("state"), Some(&Ipld::String("Completed".into())));
    let Some(Ipld::String(job_id)) = out.get("job") else {
        panic!()
    };
    // The CID the fake published, as a link.
    assert_eq!(
        published_cid(out),
        ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, job_id.as_bytes())
    );
    let Some(Ipld::List(executions)) = out.get("executions") else {
        panic!()
    };
    let Ipld::Map(first) = &executions[0] else {
        panic!()
    };
    assert_eq!(first.get("exit_code"), Some(&Ipld::Integer(0)));
    assert_eq!(
        first.get("stdout"),
        Some(&Ipld::String("hello from alpine:3\n".into()))
    );
    assert_eq!(first.get("node"), Some(&Ipld::String("node-0".into())));

    // The submitted job matches the contract and says what was asked.
    let submitted = fake.recorded(|r| r.submissions.clone());
    assert_eq!(submitted.len(), 1);
    let problems = OpenApi::bacalhau().check(&submitted[0], "apimodels.PutJobRequest");
    assert!(problems.is_empty(), "{problems:?}");
    let job = &submitted[0]["Job"];
    assert_eq!(job["Type"], "batch");
    assert_eq!(job["Name"], format!("ucan-{}", receipt.body.task));
    assert_eq!(job["Labels"]["ucan-task"], receipt.body.task.to_string());
    let task = &job["Tasks"][0];
    assert_eq!(task["Engine"]["Type"], "docker");
    assert_eq!(task["Engine"]["Params"]["Image"], "alpine:3");
    assert_eq!(
        task["Engine"]["Params"]["Entrypoint"],
        serde_json::json!(["sh", "-c"])
    );
    assert_eq!(task["Engine"]["Params"]["WorkingDirectory"], "/work");
    assert_eq!(task["Env"]["GREETING"], "hi");
    assert_eq!(task["Resources"]["CPU"], "1500m");
    assert_eq!(task["Resources"]["Memory"], "1000000000");
    assert_eq!(task["Timeouts"]["TotalTimeout"], 120);
    assert_eq!(task["Publisher"]["Type"], "ipfs");
    assert_eq!(task["ResultPaths"][0]["Path"], "/outputs");
    assert_eq!(task["InputSources"][0]["Target"], "/inputs");
    assert_eq!(task["InputSources"][0]["Source"]["Type"], "ipfs");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_outliving_the_wait_window_is_awaited_through_the_join_effect() {
    let fake = FakeBacalhau::start(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;

    let started = Instant::now();
    let (first, effects) = answer(
        &gw,
        own(&gw, &operator, "/docker/run", DOCKER_ARGS),
        Some(0),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "Prefer: wait=0 answers at once"
    );
    let out = ok_map(&first);
    assert!(
        matches!(out.get("state"), Some(Ipld::String(s)) if s != "Completed"),
        "{out:?}"
    );
    let Some(Ipld::String(job)) = out.get("job") else {
        panic!()
    };

    // The join effect: an await invocation issued by the gateway, caused by the first receipt.
    let join = first.body.fx.join.as_ref().expect("a join effect");
    assert_eq!(join.cmd.as_str(), "/bacalhau/job/await");
    assert_eq!(join.args.get("job"), Some(&Ipld::String(job.clone())));
    assert_eq!(effects.len(), 1);
    let awaiting = &effects[0];
    assert_eq!(awaiting.payload.cause, Some(first.cid()));
    assert_eq!(awaiting.payload.iss, gw.did);
    assert_eq!(awaiting.payload.task_id(), join.task_id());

    // The final receipt appears under the await invocation and under the effect's task id.
    let last = stored_receipt(gw.addr, &gw.did, &awaiting.cid(), Duration::from_secs(10)).await;
    assert_eq!(last.body.ran, awaiting.cid());
    assert_eq!(last.body.task, join.task_id());
    let final_out = ok_map(&last);
    assert_eq!(
        final_out.get("state"),
        Some(&Ipld::String("Completed".into()))
    );
    assert_eq!(
        published_cid(final_out),
        ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, job.as_bytes())
    );
    let by_task = stored_receipt(gw.addr, &gw.did, &join.task_id(), Duration::from_secs(1)).await;
    assert_eq!(by_task.cid(), last.cid());
    // The first receipt is still the answer for the original invocation.
    let again = stored_receipt(gw.addr, &gw.did, &first.body.ran, Duration::from_secs(1)).await;
    assert_eq!(again.cid(), first.cid());
    assert_eq!(fake.job_count(), 1);
    // The watcher read the job's history page by page, following NextToken.
    let paged = fake.recorded(|r| {
        r.requests
            .iter()
            .any(|(_, uri)| uri.contains("/history?next_token="))
    });
    assert!(paged, "{:?}", fake.recorded(|r| r.requests.clone()));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_third_party_is_held_to_the_image_and_resources_it_was_delegated() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let w = world(
        r#"[["==", ".image", "alpine:3"], ["<=", ".resources.cpu", 2000], ["<=", ".resources.timeout", 600]]"#,
    );
    let gw = gateway(dir.path(), &w.operator, &fake.url(), "5s").await;

    let refuse = async |a: &str| {
        let (status, bytes) = post(&gw, by_friend(&w, &gw, a), None).await;
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status, json["error"]["name"].as_str().unwrap()),
            (403, "MatchError"),
            "{a}: {json}"
        );
    };
    // Another image, more CPU, more time, or no resources stated at all: refused, nothing submitted.
    refuse(r#"{"image": "ubuntu:24.04", "resources": {"cpu": 1000, "timeout": 60}}"#).await;
    refuse(r#"{"image": "alpine:3", "resources": {"cpu": 4000, "timeout": 60}}"#).await;
    refuse(r#"{"image": "alpine:3", "resources": {"cpu": 1000, "timeout": 3600}}"#).await;
    refuse(r#"{"image": "alpine:3"}"#).await;
    assert_eq!(fake.job_count(), 0);

    // Within the delegation: runs.
    let (r, _) = answer(
        &gw,
        by_friend(
            &w,
            &gw,
            r#"{"image": "alpine:3", "resources": {"cpu": 2000, "timeout": 600}}"#,
        ),
        None,
    )
    .await;
    assert_eq!(
        ok_map(&r).get("state"),
        Some(&Ipld::String("Completed".into()))
    );
    assert_eq!(fake.job_count(), 1);

    // The operator's own route caps hold even for the operator: 3 CPUs on a 2-CPU route.
    let (r, _) = answer(
        &gw,
        own(
            &gw,
            &w.operator,
            "/docker/run",
            r#"{"image": "alpine:3", "resources": {"cpu": 3000}}"#,
        ),
        None,
    )
    .await;
    assert_eq!(error_of(&r).0, "OverLimit");
    // And in a passed-through spec.
    let spec = r#"{"job": {"Type": "batch", "Tasks": [{"Name": "t", "Engine": {"Type": "docker", "Params": {"Image": "alpine:3"}}, "Resources": {"Memory": "4Gb"}}]}}"#;
    let (r, _) = answer(&gw, own(&gw, &w.operator, "/bacalhau/job/run", spec), None).await;
    assert_eq!(error_of(&r).0, "OverLimit");
    assert_eq!(fake.job_count(), 1);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn faults_give_an_error_receipt_or_a_retry_never_a_hang_or_a_lost_job() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;
    let run = |image: &str, extra: &str| {
        own(
            &gw,
            &operator,
            "/docker/run",
            &format!(r#"{{"image": "{image}"{extra}}}"#),
        )
    };

    // 503 then 429 on submit: retried, one job.
    fake.fault(Some(Method::PUT), Fault::Status(503));
    fake.fault(Some(Method::PUT), Fault::Status(429));
    let (r, _) = answer(&gw, run("alpine:1", ""), None).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    assert_eq!(fake.job_count(), 1);

    // The submit's answer is lost after the job was created: found by name, not submitted twice.
    fake.fault(Some(Method::PUT), Fault::DropAfter);
    let (r, _) = answer(&gw, run("alpine:2", ""), None).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    assert_eq!(fake.job_count(), 2);
    // Dropped before it reached Bacalhau: submitted again, once.
    fake.fault(Some(Method::PUT), Fault::DropBefore);
    let (r, _) = answer(&gw, run("alpine:3", ""), None).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    assert_eq!(fake.job_count(), 3);

    // 500 on a read: reads are idempotent and tried again; the result still arrives.
    fake.fault(Some(Method::GET), Fault::Status(500));
    let (r, _) = answer(&gw, run("alpine:4", ""), None).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);

    // A failing job: an error receipt with Bacalhau's message, hint and code.
    let (r, _) = answer(&gw, run("example/fail", ""), None).await;
    let (name, message, details) = error_of(&r);
    assert_eq!(name, "JobFailed");
    assert!(message.contains("exit code 1"), "{message}");
    assert_eq!(
        details.get("hint"),
        Some(&Ipld::String(
            "check the image's entrypoint and arguments".into()
        ))
    );
    assert_eq!(
        details.get("code"),
        Some(&Ipld::String("ExecutionFailed".into()))
    );

    // A spec Bacalhau rejects (a lowercase env key): its error body in the receipt.
    let (r, _) = answer(&gw, run("alpine:5", r#", "env": {"lower": "x"}"#), None).await;
    let (name, message, details) = error_of(&r);
    assert_eq!(name, "BackendRejected");
    assert!(message.contains("invalid env var name"), "{message}");
    assert_eq!(
        details.get("code"),
        Some(&Ipld::String("BadRequest".into()))
    );
    assert_eq!(details.get("status"), Some(&Ipld::Integer(400)));

    // Slow: every call takes 400 ms; the request still answers within the window plus a call.
    fake.set_latency(Duration::from_millis(400));
    let started = Instant::now();
    let (r, _) = answer(&gw, run("alpine:6", ""), Some(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    fake.set_latency(Duration::ZERO);

    // Down: an error receipt naming the backend as unavailable, within the client's retries.
    fake.stop();
    let started = Instant::now();
    let (r, _) = answer(&gw, run("alpine:7", ""), None).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(error_of(&r).0, "BackendUnavailable");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_past_its_total_timeout_is_stopped_and_answered_with_an_error() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;

    let body = own(
        &gw,
        &operator,
        "/docker/run",
        r#"{"image": "example/hang", "resources": {"timeout": 1}}"#,
    );
    let (first, effects) = answer(&gw, body, Some(0)).await;
    let Some(Ipld::String(job)) = ok_map(&first).get("job") else {
        panic!()
    };
    let last = stored_receipt(gw.addr, &gw.did, &effects[0].cid(), Duration::from_secs(10)).await;
    let (name, _, details) = error_of(&last);
    assert_eq!(name, "Timeout");
    assert_eq!(details.get("job"), Some(&Ipld::String(job.clone())));
    let stops = fake.recorded(|r| r.stops.clone());
    assert_eq!(stops.len(), 1);
    assert_eq!(&stops[0].0, job);
    assert!(
        stops[0].1["reason"].as_str().unwrap().contains("timeout"),
        "{:?}",
        stops[0].1
    );
    assert_eq!(fake.state_of(job).as_deref(), Some("Stopped"));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_gateway_still_delivers_the_final_receipt() {
    let fake = FakeBacalhau::start(Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;
    let (first, effects) = answer(
        &gw,
        own(
            &gw,
            &operator,
            "/docker/run",
            r#"{"image": "alpine:3", "outputs": {"/outputs": {}}}"#,
        ),
        Some(0),
    )
    .await;
    let awaiting = effects[0].cid();
    let did = gw.did.clone();
    gw.stop().await.unwrap();
    // Nothing was settled while the gateway was down.
    let before = fake.recorded(|r| r.requests.len());

    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;
    assert_eq!(gw.did, did, "same key from the data dir");
    let last = stored_receipt(gw.addr, &gw.did, &awaiting, Duration::from_secs(10)).await;
    assert!(
        fake.recorded(|r| r.requests.len()) > before,
        "the new gateway polled the job"
    );
    assert_eq!(last.body.ran, awaiting);
    let out = ok_map(&last);
    let Some(Ipld::String(job)) = ok_map(&first).get("job") else {
        panic!()
    };
    assert_eq!(
        published_cid(out),
        ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, job.as_bytes())
    );
    gw.stop().await.unwrap();
}

/// A WASI command module that writes its arguments (NUL-separated) to stdout: `/wasm32-wasi/run`
/// routed to the local backend instead of a network.
const ARGS_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 64) (i32.const 256)))
    (i32.store (i32.const 16) (i32.const 256))
    (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"#;

#[tokio::test]
async fn bacalhau_shaped_wasm_jobs_run_locally_when_the_route_says_so() {
    use super::gateway::{args, container, error_name, gateway_with, receipt, wasm, world};

    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(
        dir.path(),
        &w.operator,
        "",
        "[[route]]\ncommand = \"/wasm32-wasi/run\"\nbackend = \"wasi\"\neffect = \"pure\"",
    )
    .await;
    let run = |a: BTreeMap<String, Ipld>| {
        let inv = InvocationBuilder::new(
            w.operator.did(),
            Command::parse("/wasm32-wasi/run").unwrap(),
            a,
        )
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300))
        .sign(&w.operator)
        .unwrap();
        container(&inv, &[])
    };
    let module = Ipld::Bytes(wasm(ARGS_WAT));
    let r = receipt(
        &gw,
        run(args(vec![
            ("module", module.clone()),
            ("entrypoint", Ipld::String("_start".into())),
            (
                "parameters",
                Ipld::List(vec![
                    Ipld::String("hello".into()),
                    Ipld::String("world".into()),
                ]),
            ),
        ])),
    )
    .await;
    let Out::Ok(Ipld::Map(ok)) = &r.body.out else {
        panic!("{:?}", r.body.out)
    };
    assert_eq!(
        ok.get("stdout"),
        Some(&Ipld::Bytes(b"module.wasm\0hello\0world\0".to_vec()))
    );
    // What only a compute network can do is refused, not ignored.
    let mounted = run(args(vec![
        ("module", module),
        ("mounts", Ipld::Map(BTreeMap::new())),
    ]));
    assert_eq!(error_name(&receipt(&gw, mounted).await), "InvalidArgs");
    gw.stop().await.unwrap();
}
