//! Load test: `/wasm/run` with a one-delegation chain against a gateway on loopback.
//!
//! ```sh
//! cargo run --release --example loadtest -- [REQUESTS] [CONCURRENCY]   # defaults: 5000 32
//! ```
//!
//! It starts a gateway in this process (same code as `ucan-gateway serve`, SQLite in a temporary
//! directory), signs every invocation before the clock starts (so client-side signing is not
//! measured), then sends them at the given concurrency and reports invocations/s and latency
//! percentiles. Each invocation adds different numbers, so none is answered from the memo cache.
//! Client and server share the machine: compare figures only within one run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::{ServeArgs, start};
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;

/// `(func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)`, compiled.
const ADD_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01,
    0x7f, 0x03, 0x02, 0x01, 0x00, 0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x0a, 0x09,
    0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b,
];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut argv = std::env::args().skip(1);
    let requests: usize = argv.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let concurrency: usize = argv.next().map(|a| a.parse()).transpose()?.unwrap_or(32);

    let dir = std::env::temp_dir().join(format!("ucan-gateway-loadtest-{}", std::process::id()));
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    std::fs::create_dir_all(&dir)?;
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "subjects = [\"{}\"]\n[[route]]\ncommand = \"/wasm/run\"\nbackend = \"wasm\"\neffect = \"pure\"\n",
            operator.did()
        ),
    )?;
    let gateway = start(ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.clone(),
        key: None,
        policy: Some(policy),
        modules: None,
        leeway: 60,
        bacalhau: None,
        log_format: ucan_gateway::cli::serve::LogFormat::Text,
        http: Default::default(),
        store: Default::default(),
    })
    .await?;

    // One delegation: the operator (the subject) to the client.
    let client = SigningKey::generate(KeyAlg::Ed25519);
    let delegation = DelegationBuilder::new(
        client.did(),
        Some(operator.did()),
        Command::parse("/wasm/run")?,
    )
    .expires(Some(unix_now() + 3600))
    .sign(&operator)?;
    eprintln!("signing {requests} invocations…");
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|i| {
            let args = BTreeMap::from([
                ("module".to_owned(), Ipld::Bytes(ADD_WASM.to_vec())),
                ("func".to_owned(), Ipld::String("add".into())),
                (
                    "args".to_owned(),
                    Ipld::List(vec![Ipld::Integer(i as i128), Ipld::Integer(1)]),
                ),
            ]);
            let inv =
                InvocationBuilder::new(operator.did(), Command::parse("/wasm/run").unwrap(), args)
                    .audience(gateway.did.clone())
                    .proofs(vec![delegation.cid()])
                    .expires(Some(unix_now() + 3600))
                    .sign(&client)
                    .unwrap();
            let mut c = Container::default();
            c.tokens.push(inv.bytes().to_vec());
            c.tokens.push(delegation.bytes().to_vec());
            c.encode(Format::Raw)
        })
        .collect();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = format!("http://{}/", gateway.addr);
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    eprintln!("sending at concurrency {concurrency}…");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (http, url, queue) = (http.clone(), url.clone(), Arc::clone(&queue));
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let Some(body) = queue.lock().unwrap().pop() else {
                    break;
                };
                let sent = Instant::now();
                match http.post(&url).body(body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    let mut failures = 0;
    for worker in workers {
        let (l, f) = worker.await?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{} ok, {failures} failed in {:.2}s: {:.0} invocations/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
    gateway.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
