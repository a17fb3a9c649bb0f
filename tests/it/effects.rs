//! Promises, pipelines and effects over real HTTP: a task's output feeding another through
//! `await/ok` (in one request and across two), branch mismatches, effects with and without the
//! authority to issue them, and the bounds on effects the gateway runs itself.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use cid::Cid;
use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::ipld::{RAW, cid_for, to_dag_cbor};
use ucan_gateway::receipt::{Out, Receipt};
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::envelope::{Envelope, Kind};
use ucan_gateway::ucan::invocation::{InvocationBuilder, task_id};
use ucan_gateway::ucan::validate::{self, Options, unix_now};
use ucan_gateway::ucan::{Command, Delegation, Invocation, Policy};

use super::gateway::{
    World, args, container, error_name, gateway_with, post, receipt, refused, wasm, world,
};

const ADD_WAT: &str = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#;
const TRAP_ADD_WAT: &str =
    r#"(module (func (export "add") (param i32 i32) (result i32) unreachable))"#;

/// A DAG-CBOR ABI guest whose `add` export ignores its input and returns `result`.
pub(crate) fn returning(result: &Ipld) -> Vec<u8> {
    let bytes = to_dag_cbor(result).unwrap();
    assert!(
        bytes.len() < 1000,
        "the data segment must end below the heap"
    );
    let data: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
    let packed = (16u64 << 32) | bytes.len() as u64;
    wasm(&format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (data (i32.const 16) "{data}")
  (func (export "alloc") (param $len i32) (result i32)
    global.get $next
    global.get $next local.get $len i32.add global.set $next)
  (func (export "add") (param i32 i32) (result i64) i64.const {packed}))"#
    ))
}

pub(crate) fn map(pairs: Vec<(&str, Ipld)>) -> Ipld {
    Ipld::Map(args(pairs))
}

pub(crate) fn add(module: Ipld, a: Ipld, b: Ipld) -> BTreeMap<String, Ipld> {
    args(vec![
        ("module", module),
        ("func", Ipld::String("add".into())),
        ("args", Ipld::List(vec![a, b])),
    ])
}

pub(crate) fn awaiting(branch: &str, target: Cid) -> Ipld {
    map(vec![(branch, Ipld::Link(target))])
}

/// An invocation by the world's friend, with `nonce`.
pub(crate) fn invoke(
    w: &World,
    gw: &Running,
    a: BTreeMap<String, Ipld>,
    nonce: &[u8],
) -> Invocation {
    InvocationBuilder::new(w.operator.did(), Command::parse("/wasm/run").unwrap(), a)
        .audience(gw.did.clone())
        .proofs(w.chain.iter().map(|d| d.cid()).collect())
        .nonce(nonce.to_vec())
        .expires(Some(unix_now() + 300))
        .sign(&w.friend)
        .unwrap()
}

/// The world's chain with the friend's policy replaced by `policy`.
fn with_policy(mut w: World, policy: &str) -> World {
    w.chain[1] = DelegationBuilder::new(
        w.friend.did(),
        Some(w.operator.did()),
        Command::parse("/wasm/run").unwrap(),
    )
    .policy(Policy::from_json(policy).unwrap())
    .expires(Some(unix_now() + 3600))
    .sign(&w.app)
    .unwrap();
    w
}

/// The friend's delegation of `/wasm/run` (only `add`) on the operator's behalf to the gateway.
pub(crate) fn to_gateway(w: &World, gw: &Running) -> Delegation {
    DelegationBuilder::new(
        gw.did.clone(),
        Some(w.operator.did()),
        Command::parse("/wasm/run").unwrap(),
    )
    .policy(Policy::from_json(r#"[["==", ".func", "add"]]"#).unwrap())
    .expires(Some(unix_now() + 3600))
    .sign(&w.friend)
    .unwrap()
}

/// One container with several invocations and the proofs.
pub(crate) fn pipeline(invocations: &[&Invocation], proofs: &[Delegation]) -> Vec<u8> {
    let mut c = Container::default();
    c.tokens
        .extend(invocations.iter().map(|inv| inv.bytes().to_vec()));
    c.tokens.extend(proofs.iter().map(|d| d.bytes().to_vec()));
    c.encode(Format::Raw)
}

/// Every token of a 200 response, sorted into receipts (verified against the gateway), other
/// invocations and delegations.
pub(crate) async fn reply(
    gw: &Running,
    body: Vec<u8>,
) -> (Vec<Receipt>, Vec<Invocation>, HashMap<Cid, Delegation>) {
    let (status, bytes) = post(gw, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let mut receipts = Vec::new();
    let mut invocations = Vec::new();
    let mut delegations = HashMap::new();
    for token in Container::decode(&bytes).unwrap().tokens {
        if let Ok(r) = Receipt::decode(&token) {
            r.verify(Some(&gw.did)).expect("signed by the gateway");
            receipts.push(r);
            continue;
        }
        let envelope = Envelope::decode(&token).unwrap();
        match envelope.kind {
            Kind::Delegation => {
                let d = Delegation::from_envelope(envelope).unwrap();
                delegations.insert(d.cid(), d);
            }
            Kind::Invocation => invocations.push(Invocation::from_envelope(envelope).unwrap()),
        }
    }
    (receipts, invocations, delegations)
}

/// Polls `GET /receipts/{cid}` until a receipt satisfying `wanted` is there (10 s at most).
async fn stored(gw: &Running, cid: Cid, wanted: impl Fn(&Receipt) -> bool) -> Receipt {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = reqwest::get(format!("http://{}/receipts/{cid}", gw.addr))
            .await
            .unwrap();
        if response.status().as_u16() == 200 {
            let tokens = Container::decode(&response.bytes().await.unwrap())
                .unwrap()
                .tokens;
            let r = Receipt::decode(&tokens[0]).unwrap();
            r.verify(Some(&gw.did)).unwrap();
            if wanted(&r) {
                return r;
            }
        }
        assert!(Instant::now() < deadline, "no matching receipt for {cid}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Puts `bytes` in the gateway's blob store, by the operator, and returns their CID.
pub(crate) async fn put_blob(w: &World, gw: &Running, bytes: Vec<u8>) -> Cid {
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/blob/put").unwrap(),
        args(vec![("bytes", Ipld::Bytes(bytes.clone()))]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    let r = receipt(gw, container(&inv, &[])).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    cid_for(RAW, &bytes)
}

const POSITIVE_BELOW_100: &str = r#"[["==", ".func", "add"], ["<", ".args[0]", 100]]"#;

#[tokio::test]
async fn a_two_step_pipeline_runs_from_one_request_in_dependency_order() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_policy(world(), POSITIVE_BELOW_100);
    let gw = gateway_with(dir.path(), &w.operator, "", "").await;
    let module = Ipld::Bytes(wasm(ADD_WAT));

    let first = invoke(&w, &gw, add(module.clone(), 2.into(), 3.into()), b"1");
    let awaited = awaiting("await/ok", first.payload.task_id());
    let second = invoke(&w, &gw, add(module, awaited, 10.into()), b"2");
    // The dependent invocation comes first in the container: order is by promise, not position.
    let (receipts, _, _) = reply(&gw, pipeline(&[&second, &first], &w.chain)).await;
    assert_eq!(receipts.len(), 2);
    let by_ran = |cid: Cid| receipts.iter().find(|r| r.body.ran == cid).unwrap();
    assert_eq!(by_ran(first.cid()).body.out, Out::Ok(Ipld::Integer(5)));
    // The chain's policy (`.args[0] < 100`) held on the resolved value; on the promise itself (a
    // map) it could not have.
    assert_eq!(by_ran(second.cid()).body.out, Out::Ok(Ipld::Integer(15)));
    assert_eq!(by_ran(second.cid()).body.task, second.payload.task_id());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_promise_resolves_from_an_earlier_request_and_policies_see_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let w = with_policy(world(), POSITIVE_BELOW_100);
    let gw = gateway_with(dir.path(), &w.operator, "", "").await;
    let module = Ipld::Bytes(wasm(ADD_WAT));

    let first = invoke(&w, &gw, add(module.clone(), 20.into(), 22.into()), b"1");
    let r1 = receipt(&gw, container(&first, &w.chain)).await;
    assert_eq!(r1.body.out, Out::Ok(Ipld::Integer(42)));

    // By invocation CID, in a second request.
    let second = invoke(
        &w,
        &gw,
        add(module.clone(), awaiting("await/ok", first.cid()), 1.into()),
        b"2",
    );
    let r2 = receipt(&gw, container(&second, &w.chain)).await;
    assert_eq!(r2.body.out, Out::Ok(Ipld::Integer(43)));
    assert_eq!(r2.body.ran, second.cid());

    // A resolved value outside the chain's policy is refused like a literal one would be.
    let big = invoke(&w, &gw, add(module.clone(), 60.into(), 50.into()), b"3");
    receipt(&gw, container(&big, &w.chain)).await;
    let over = invoke(
        &w,
        &gw,
        add(
            module,
            awaiting("await/ok", big.payload.task_id()),
            1.into(),
        ),
        b"4",
    );
    refused(&gw, container(&over, &w.chain), 403, "MatchError").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_branch_mismatch_and_a_missing_result_are_answered_as_the_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(
        dir.path(),
        &w.operator,
        "",
        "[effects]\npromise_wait = \"300ms\"",
    )
    .await;

    let failing = invoke(
        &w,
        &gw,
        add(Ipld::Bytes(wasm(TRAP_ADD_WAT)), 1.into(), 2.into()),
        b"1",
    );
    let r1 = receipt(&gw, container(&failing, &w.chain)).await;
    assert_eq!(error_name(&r1), "Trap");

    let dependent = invoke(
        &w,
        &gw,
        add(
            Ipld::Bytes(wasm(ADD_WAT)),
            awaiting("await/ok", failing.cid()),
            1.into(),
        ),
        b"2",
    );
    let r2 = receipt(&gw, container(&dependent, &w.chain)).await;
    assert_eq!(error_name(&r2), "BranchMismatch");
    let Out::Error { details, .. } = &r2.body.out else {
        unreachable!()
    };
    assert_eq!(details["reason"], Ipld::String("branch mismatch".into()));
    assert_eq!(details["expected"], Ipld::String("ok".into()));
    assert_eq!(details["got"], Ipld::String("error".into()));
    assert_eq!(details["from"], Ipld::Link(r1.cid()));

    // A promise nobody will keep: refused after the policy's wait, nothing signed, retryable.
    let orphan = invoke(
        &w,
        &gw,
        add(
            Ipld::Bytes(wasm(ADD_WAT)),
            awaiting("await/ok", cid_for(RAW, b"never run")),
            1.into(),
        ),
        b"3",
    );
    refused(&gw, container(&orphan, &w.chain), 503, "UnresolvedPromise").await;
    gw.stop().await.unwrap();
}

/// A guest that returns 7 and asks for `effects` (fork).
pub(crate) fn requesting(effects: Vec<Ipld>) -> Vec<u8> {
    returning(&map(vec![
        ("ucan/ok", Ipld::Integer(7)),
        ("ucan/fx", map(vec![("fork", Ipld::List(effects))])),
    ]))
}

/// The guest's args: the DAG-CBOR ABI (an `input` selects it).
pub(crate) fn abi(module: Ipld) -> BTreeMap<String, Ipld> {
    args(vec![
        ("module", module),
        ("func", Ipld::String("add".into())),
        ("input", map(vec![])),
    ])
}

pub(crate) fn effect(module: Cid, a: i128, nonce: &[u8]) -> Ipld {
    map(vec![
        ("cmd", Ipld::String("/wasm/run".into())),
        (
            "args",
            Ipld::Map(add(Ipld::Link(module), a.into(), 2.into())),
        ),
        ("nonce", Ipld::Bytes(nonce.to_vec())),
    ])
}

#[tokio::test]
async fn an_effect_needs_authority_delegated_to_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(dir.path(), &w.operator, "", "").await;
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let guest = Ipld::Bytes(requesting(vec![effect(adder, 1, b"e")]));

    // Without a delegation to the gateway: the receipt says so, and no effect is issued.
    let inv = invoke(&w, &gw, abi(guest.clone()), b"1");
    let (receipts, effects, _) = reply(&gw, container(&inv, &w.chain)).await;
    assert_eq!(error_name(&receipts[0]), "UnauthorizedEffect");
    assert!(receipts[0].body.fx.is_empty() && effects.is_empty());

    // With one whose policy the effect breaks (it allows only `add`; this asks for `mul`).
    let mut wrong = effect(adder, 1, b"e");
    if let Ipld::Map(m) = &mut wrong
        && let Some(Ipld::Map(a)) = m.get_mut("args")
    {
        a.insert("func".into(), Ipld::String("mul".into()));
    }
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(requesting(vec![wrong]))), b"2");
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let (receipts, _, _) = reply(&gw, container(&inv, &proofs)).await;
    assert_eq!(error_name(&receipts[0]), "UnauthorizedEffect");
    let Out::Error { message, .. } = &receipts[0].body.out else {
        unreachable!()
    };
    assert!(message.contains("MatchError"), "{message}");

    // With it: the effect is issued by the gateway, caused by the receipt, and valid on its own.
    let inv = invoke(&w, &gw, abi(guest), b"3");
    let (receipts, effects, delegations) = reply(&gw, container(&inv, &proofs)).await;
    let r = &receipts[0];
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(7)));
    assert_eq!(effects.len(), 1);
    let fx = &effects[0];
    assert_eq!(fx.payload.iss, gw.did);
    assert_eq!(fx.payload.cause, Some(r.cid()));
    assert_eq!(fx.payload.task_id(), r.body.fx.fork[0].task_id());
    let mut all = delegations.clone();
    all.extend(w.chain.iter().map(|d| (d.cid(), d.clone())));
    let opts = Options {
        now: unix_now(),
        leeway: 0,
    };
    validate::validate(fx, &all, opts, &validate::NoRevocations, &validate::NoCache)
        .expect("the effect carries its own authority");

    // Left to the client (the route does not run effects): submitting it as returned runs it.
    let mut c = Container::default();
    c.tokens.push(fx.bytes().to_vec());
    c.tokens.extend(all.values().map(|d| d.bytes().to_vec()));
    let r = receipt(&gw, c.encode(Format::Raw)).await;
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(3)));
    assert_eq!(r.body.ran, fx.cid());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_gateway_runs_effects_within_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(
        dir.path(),
        &w.operator,
        "run_effects = true",
        "[effects]\nmax_depth = 1\nmax_fanout = 2",
    )
    .await;
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let sub = w.operator.did();
    let cmd = Command::parse("/wasm/run").unwrap();
    let effect_task = |a: i128, nonce: &[u8]| {
        task_id(
            &sub,
            &cmd,
            &add(Ipld::Link(adder), a.into(), 2.into()),
            nonce,
        )
    };

    // Three forks, at most two run; each has a receipt under its task id.
    let guest = requesting(vec![
        effect(adder, 1, b"a"),
        effect(adder, 2, b"b"),
        effect(adder, 3, b"c"),
    ]);
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let (receipts, _, _) = reply(&gw, container(&inv, &proofs)).await;
    assert_eq!(receipts[0].body.out, Out::Ok(Ipld::Integer(7)));
    let first = stored(&gw, effect_task(1, b"a"), |_| true).await;
    assert_eq!(first.body.out, Out::Ok(Ipld::Integer(3)));
    let second = stored(&gw, effect_task(2, b"b"), |_| true).await;
    assert_eq!(second.body.out, Out::Ok(Ipld::Integer(4)));
    let third = stored(&gw, effect_task(3, b"c"), |_| true).await;
    assert_eq!(error_name(&third), "EffectFanOutExceeded");

    // The CLI draws the tree from the gateway: the request's receipt and its three effects.
    let url = format!("http://{}", gw.addr);
    let cli = |flag: &'static str| {
        let (url, cid) = (url.clone(), inv.cid().to_string());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
                .args(["receipts", &cid, "--url", &url])
                .args(flag.split(' '))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let tree = cli("--tree").await.unwrap();
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 4, "{tree}");
    assert!(
        lines[0].starts_with(&format!("ran {}", inv.cid())),
        "{tree}"
    );
    assert!(lines[0].ends_with(": ok 7"), "{tree}");
    assert!(
        lines[1].starts_with("├─ fork /wasm/run ran ") && lines[1].ends_with("ok 3"),
        "{tree}"
    );
    assert!(
        lines[3].starts_with("└─ fork /wasm/run ") && lines[3].contains("EffectFanOutExceeded"),
        "{tree}"
    );
    let dot = cli("--dot").await.unwrap();
    assert!(dot.starts_with("digraph receipts {"), "{dot}");
    // The same tree for scripts: flat, parents first, each effect's receipt under its task id.
    let json: serde_json::Value =
        serde_json::from_str(&cli("--tree --output json").await.unwrap()).unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{json}");
    assert_eq!(nodes[0]["receipt"]["ran"], inv.cid().to_string());
    assert_eq!(nodes[0]["receipt"]["fx_tasks"]["fork"][0], nodes[1]["task"]);
    assert_eq!(nodes[1]["parent"], 0);
    assert_eq!(nodes[1]["receipt"]["out"]["ok"], 3);
    assert_eq!(dot.matches(" -> ").count(), 3, "{dot}");

    gw.stop().await.unwrap();
}

/// A DAG-CBOR ABI guest whose input is `{m: <link to itself>, n: 0 | 1}` and which asks for one
/// fork effect: itself again with `n` flipped. Two steps down, the effect repeats the first task.
fn toggling() -> Vec<u8> {
    // Everything before the input copy, with text strings spelled out.
    let text = |s: &str| {
        let mut b = vec![0x60 + s.len() as u8];
        b.extend(s.as_bytes());
        b
    };
    let mut prefix = vec![0xa2];
    prefix.extend(text("ucan/fx"));
    prefix.extend([0xa1]);
    prefix.extend(text("fork"));
    prefix.extend([0x81, 0xa2]);
    prefix.extend(text("cmd"));
    prefix.extend([0x69]);
    prefix.extend(b"/wasm/run");
    prefix.extend(text("args"));
    prefix.extend([0xa3]);
    prefix.extend(text("func"));
    prefix.extend(text("add"));
    prefix.extend(text("input"));
    let module_key = text("module");
    let mut suffix = text("ucan/ok");
    suffix.push(0x07);
    // Output layout at 16: prefix, input (47 bytes, last flipped), "module", link (41 bytes), suffix.
    let hex = |b: &[u8]| b.iter().map(|b| format!("\\{b:02x}")).collect::<String>();
    let input_at = 16 + prefix.len();
    let key_at = input_at + 47;
    let link_at = key_at + module_key.len();
    let suffix_at = link_at + 41;
    let total = suffix_at + suffix.len() - 16;
    wasm(&format!(
        r#"(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  (data (i32.const 16) "{}")
  (data (i32.const {key_at}) "{}")
  (data (i32.const {suffix_at}) "{}")
  (func (export "alloc") (param $len i32) (result i32)
    global.get $next
    global.get $next local.get $len i32.add global.set $next)
  (func (export "add") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.ne (local.get $len) (i32.const 47)) (then unreachable))
    (memory.copy (i32.const {input_at}) (local.get $ptr) (i32.const 47))
    (i32.store8 (i32.const {last})
      (i32.xor (i32.load8_u (i32.const {last})) (i32.const 1)))
    (memory.copy (i32.const {link_at}) (i32.add (local.get $ptr) (i32.const 3)) (i32.const 41))
    (i64.const {packed})))"#,
        hex(&prefix),
        hex(&module_key),
        hex(&suffix),
        last = input_at + 46,
        packed = (16u64 << 32) | total as u64,
    ))
}

/// Runs the toggling guest with the given `[effects]` table and returns the receipt of the effect
/// two steps down (the one that repeats the first task).
async fn second_generation(effects: &str) -> Receipt {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(dir.path(), &w.operator, "run_effects = true", effects).await;
    let guest = put_blob(&w, &gw, toggling()).await;
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let input = |n: i128| map(vec![("m", Ipld::Link(guest)), ("n", n.into())]);
    let a = args(vec![
        ("module", Ipld::Link(guest)),
        ("func", Ipld::String("add".into())),
        ("input", input(0)),
    ]);
    let inv = invoke(&w, &gw, a, b"");
    let (receipts, _, _) = reply(&gw, container(&inv, &proofs)).await;
    assert_eq!(receipts[0].body.out, Out::Ok(Ipld::Integer(7)));
    assert_eq!(receipts[0].body.fx.fork.len(), 1);
    // The first effect (n = 1) runs; the one it asks for repeats the request's task.
    let mut first_args = receipts[0].body.fx.fork[0].args.clone();
    assert_eq!(first_args.remove("input"), Some(input(1)));
    let repeated = inv.payload.task_id();
    let cut = stored(&gw, repeated, |r| r.body.ran != inv.cid()).await;
    gw.stop().await.unwrap();
    cut
}

#[tokio::test]
async fn an_effect_that_repeats_an_ancestor_is_cut_as_a_cycle() {
    let cut = second_generation("[effects]\nmax_depth = 4").await;
    assert_eq!(error_name(&cut), "EffectCycle");
}

#[tokio::test]
async fn effects_deeper_than_the_bound_are_cut() {
    let cut = second_generation("[effects]\nmax_depth = 1").await;
    assert_eq!(error_name(&cut), "EffectDepthExceeded");
}

#[tokio::test]
async fn a_malformed_effect_request_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(dir.path(), &w.operator, "", "").await;
    let bad = returning(&map(vec![
        ("ucan/ok", Ipld::Integer(1)),
        (
            "ucan/fx",
            map(vec![(
                "fork",
                Ipld::List(vec![map(vec![("cmd", 5.into())])]),
            )]),
        ),
    ]));
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(bad)), b"1");
    let r = receipt(&gw, container(&inv, &w.chain)).await;
    assert_eq!(error_name(&r), "InvalidEffect");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn follow_join_waits_for_the_end_of_the_join_chain() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(dir.path(), &w.operator, "run_effects = true", "").await;
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let guest = returning(&map(vec![
        ("ucan/ok", Ipld::Integer(7)),
        ("ucan/fx", map(vec![("join", effect(adder, 10, b"j"))])),
    ]));
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let (receipts, effects, _) = reply(&gw, container(&inv, &proofs)).await;
    assert_eq!(receipts[0].body.out, Out::Ok(Ipld::Integer(7)));
    let join = receipts[0].body.fx.join.as_ref().expect("a join effect");
    assert_eq!(effects.len(), 1);

    let followed = reqwest::get(format!(
        "http://{}/receipts/{}?follow=join&wait=10",
        gw.addr,
        inv.cid()
    ))
    .await
    .unwrap();
    assert_eq!(followed.status().as_u16(), 200);
    let tokens = Container::decode(&followed.bytes().await.unwrap())
        .unwrap()
        .tokens;
    let end = Receipt::decode(&tokens[0]).unwrap();
    end.verify(Some(&gw.did)).unwrap();
    assert_eq!(end.body.out, Out::Ok(Ipld::Integer(12)), "10 + 2");
    assert_eq!(end.body.ran, effects[0].cid());
    assert_eq!(end.body.task, join.task_id());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_promise_waits_for_a_result_that_arrives_later() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(dir.path(), &w.operator, "", "").await;
    let module = Ipld::Bytes(wasm(ADD_WAT));
    let first = invoke(&w, &gw, add(module.clone(), 1.into(), 1.into()), b"1");
    let second = invoke(
        &w,
        &gw,
        add(
            module,
            awaiting("await/ok", first.payload.task_id()),
            1.into(),
        ),
        b"2",
    );
    // The dependent request goes first and waits; the awaited one arrives while it does.
    let early = {
        let body = container(&second, &w.chain);
        let url = format!("http://{}/", gw.addr);
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.bytes().await.unwrap().to_vec(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!early.is_finished(), "the dependent request waits");
    receipt(&gw, container(&first, &w.chain)).await;
    let (status, bytes) = early.await.unwrap();
    assert_eq!(status, 200);
    let r = Receipt::decode(&Container::decode(&bytes).unwrap().tokens[0]).unwrap();
    assert_eq!(r.body.out, Out::Ok(Ipld::Integer(3)));

    // Without authority nobody gets the gateway to wait: refused at once, not after the 10 s wait
    // (a chain neither sent whole nor kept by the gateway: a stranger's).
    let stranger = world();
    let orphan = invoke(
        &stranger,
        &gw,
        add(
            Ipld::Bytes(wasm(ADD_WAT)),
            awaiting("await/ok", cid_for(RAW, b"never run")),
            1.into(),
        ),
        b"3",
    );
    let started = Instant::now();
    refused(
        &gw,
        container(&orphan, &stranger.chain[..1]),
        510,
        "UnavailableProof",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn resolved_arguments_are_held_to_the_input_limit() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(
        dir.path(),
        &w.operator,
        "[route.limits]\nmax_input = 560",
        "",
    )
    .await;
    // A stored guest returning 600 bytes; its own arguments are a few dozen bytes.
    let big = put_blob(&w, &gw, returning(&Ipld::Bytes(vec![7; 600]))).await;
    let first = invoke(&w, &gw, abi(Ipld::Link(big)), b"1");
    let r = receipt(&gw, container(&first, &w.chain)).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let second = invoke(
        &w,
        &gw,
        add(
            Ipld::Link(adder),
            awaiting("await/ok", first.cid()),
            1.into(),
        ),
        b"2",
    );
    assert!(
        second.bytes().len() <= 560,
        "the token alone fits: {}",
        second.bytes().len()
    );
    refused(&gw, container(&second, &w.chain), 413, "InputTooLarge").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_guest_cannot_borrow_the_gateways_own_job_awaits() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(dir.path(), &w.operator, "run_effects = true", "").await;
    // The await effect a compute network's executor issues, asked for by a Wasm guest instead.
    let borrowed = map(vec![
        ("cmd", Ipld::String("/bacalhau/job/await".into())),
        ("sub", Ipld::String(gw.did.clone())),
        (
            "args",
            map(vec![
                ("job", Ipld::String("j-someone-else".into())),
                ("backend", Ipld::String("wasm".into())),
            ]),
        ),
    ]);
    let guest = returning(&map(vec![
        ("ucan/ok", Ipld::Integer(1)),
        ("ucan/fx", map(vec![("join", borrowed)])),
    ]));
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let (receipts, effects, _) = reply(&gw, container(&inv, &w.chain)).await;
    assert_eq!(error_name(&receipts[0]), "UnauthorizedEffect");
    assert!(effects.is_empty());
    gw.stop().await.unwrap();
}
