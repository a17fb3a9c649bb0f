//! Operator rate limits over real HTTP: a token bucket per invoker and per root issuer, tasks
//! running at once, 429 `RateLimited` with `Retry-After`, counted only once authority holds.

use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;

use super::gateway::{
    ADD_WAT, SPIN_WAT, World, add_args, args, container, gateway, gateway_with, invoke, receipt,
    wasm, world,
};

/// Posts and returns the status, the error name (if any) and `Retry-After` (if any).
async fn send(gw: &Running, body: Vec<u8>) -> (u16, String, Option<u64>) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/", gw.addr))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let json: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
    let name = json["error"]["name"].as_str().unwrap_or("").to_owned();
    (status, name, retry)
}

/// The friend's `add` invocation, with the world's whole chain.
fn add(w: &World, gw: &Running, a: i128) -> Vec<u8> {
    container(
        &invoke(w, gw, "/wasm/run", add_args(wasm(ADD_WAT), a, 1)),
        &w.chain,
    )
}

#[tokio::test]
async fn an_invoker_gets_its_burst_then_429_with_retry_after_and_forgeries_cost_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let limits = "[rate_limits.invoker]\nrate = 0.01\nburst = 2\n";
    let gw = gateway(dir.path(), &w.operator, limits).await;

    // Requests that fail authority are not counted against the invoker they name.
    for a in 0..5 {
        let inv = invoke(&w, &gw, "/wasm/run", add_args(wasm(ADD_WAT), a, 1));
        let mut bytes = inv.bytes().to_vec();
        bytes[10] ^= 1;
        let mut c = Container::default();
        c.tokens.push(bytes);
        c.tokens.extend(w.chain.iter().map(|d| d.bytes().to_vec()));
        assert_eq!(send(&gw, c.encode(Format::Raw)).await.0, 401);
    }
    receipt(&gw, add(&w, &gw, 1)).await;
    receipt(&gw, add(&w, &gw, 2)).await;
    let refused = add(&w, &gw, 3);
    let (status, name, retry) = send(&gw, refused.clone()).await;
    assert_eq!((status, name.as_str()), (429, "RateLimited"));
    // One token per 100 s at 0.01/s.
    let retry = retry.expect("Retry-After");
    assert!((90..=100).contains(&retry), "{retry}");
    // A refused invocation was not marked as seen: refused again as rate limited, not replayed.
    assert_eq!(send(&gw, refused).await.1, "RateLimited");

    // The operator invoking on its own behalf has a budget of its own.
    let own = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(wasm(ADD_WAT), 7, 7),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    receipt(&gw, container(&own, &[])).await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn invokers_under_one_root_issuer_share_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let limits = "[rate_limits.issuer]\nrate = 0.01\nburst = 2\n";
    let gw = gateway(dir.path(), &w.operator, limits).await;
    receipt(&gw, add(&w, &gw, 1)).await;
    // The app invokes with the root alone: another invoker, the same root issuer.
    let by_app = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(wasm(ADD_WAT), 2, 2),
    )
    .audience(gw.did.clone())
    .proofs(vec![w.chain[0].cid()])
    .expires(Some(unix_now() + 300))
    .sign(&w.app)
    .unwrap();
    receipt(&gw, container(&by_app, &w.chain[..1])).await;
    let (status, name, retry) = send(&gw, add(&w, &gw, 3)).await;
    assert_eq!((status, name.as_str()), (429, "RateLimited"));
    assert!(retry.is_some());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn tasks_running_at_once_are_capped_per_invoker() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(
        dir.path(),
        &w.operator,
        "limits = { fuel = 1_000_000_000_000, timeout = \"1s\" }",
        "[rate_limits.invoker]\nconcurrent = 1\n",
    )
    .await;
    let spin = |nonce: &[u8]| {
        let inv = InvocationBuilder::new(
            w.operator.did(),
            Command::parse("/wasm/run").unwrap(),
            args(vec![
                ("module", Ipld::Bytes(wasm(SPIN_WAT))),
                ("func", Ipld::String("spin".into())),
                ("args", Ipld::List(vec![])),
            ]),
        )
        .audience(gw.did.clone())
        .nonce(nonce.to_vec())
        .expires(Some(unix_now() + 300))
        .sign(&w.operator)
        .unwrap();
        container(&inv, &[])
    };
    let first = {
        let (addr, body) = (gw.addr, spin(b"1"));
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/"))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, name, retry) = send(&gw, spin(b"2")).await;
    assert_eq!(
        (status, name.as_str(), retry),
        (429, "RateLimited", Some(1))
    );
    // Another invoker is not held up.
    receipt(&gw, add(&w, &gw, 1)).await;
    assert_eq!(first.await.unwrap(), 200);
    // Once the first has finished, the invoker may run another.
    let r = receipt(&gw, spin(b"3")).await;
    assert!(!r.body.out.is_ok(), "an endless loop times out");
    gw.stop().await.unwrap();
}

#[test]
fn rate_limits_are_read_from_the_policy_and_bad_values_point_at_themselves() {
    use ucan_gateway::config::{OperatorPolicy, PolicyFileErrorKind, Rate};
    let policy = OperatorPolicy::parse(
        "[rate_limits]\nmax_tracked = 500\n[rate_limits.invoker]\nrate = 5\nconcurrent = 3\n\
         [rate_limits.issuer]\nrate = 0.5\nburst = 10\n",
        "p.toml",
    )
    .unwrap();
    let limits = policy.rate_limits;
    assert_eq!(limits.max_tracked, 500);
    // A burst defaults to one second's worth.
    assert_eq!(
        limits.invoker.rate,
        Some(Rate {
            per_second: 5.0,
            burst: 5
        })
    );
    assert_eq!(limits.invoker.concurrent, Some(3));
    assert_eq!(
        limits.issuer.rate,
        Some(Rate {
            per_second: 0.5,
            burst: 10
        })
    );
    assert!(
        !OperatorPolicy::parse("", "p.toml")
            .unwrap()
            .rate_limits
            .any()
    );

    for (text, line, column) in [
        ("[rate_limits.invoker]\nrate = 0\n", 2, 8),
        ("[rate_limits.invoker]\nrate = -1.5\n", 2, 8),
        ("[rate_limits.issuer]\nburst = 4\n", 2, 9),
        ("[rate_limits.issuer]\nrate = 1\nconcurrent = 0\n", 3, 14),
        ("[rate_limits]\nmax_tracked = -3\n", 2, 15),
    ] {
        let e = OperatorPolicy::parse(text, "p.toml").unwrap_err();
        assert_eq!(
            (e.kind, e.line, e.column),
            (PolicyFileErrorKind::RateLimit, line, column),
            "{text}: {e}"
        );
    }
    let e = OperatorPolicy::parse("[rate_limits.invoker]\nrps = 3\n", "p.toml").unwrap_err();
    assert_eq!(e.kind, PolicyFileErrorKind::Toml, "{e}");
}

#[tokio::test]
async fn an_invoker_over_budget_is_refused_before_the_gateway_waits_on_its_promises() {
    use ucan_gateway::ipld::{RAW, cid_for};
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(
        dir.path(),
        &w.operator,
        "[rate_limits.invoker]\nrate = 0.01\nburst = 1\n",
    )
    .await;
    receipt(&gw, add(&w, &gw, 1)).await;
    let waiting = super::effects::invoke(
        &w,
        &gw,
        super::effects::add(
            Ipld::Bytes(wasm(ADD_WAT)),
            super::effects::awaiting("await/ok", cid_for(RAW, b"never run")),
            1.into(),
        ),
        b"w",
    );
    let started = std::time::Instant::now();
    let (status, name, _) = send(&gw, container(&waiting, &w.chain)).await;
    assert_eq!((status, name.as_str()), (429, "RateLimited"));
    // Not after the policy's 10 s promise wait.
    assert!(started.elapsed() < Duration::from_secs(5));
    gw.stop().await.unwrap();
}
