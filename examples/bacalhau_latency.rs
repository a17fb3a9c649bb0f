//! The gateway's added latency in front of Bacalhau: the same jobs run directly against the fake
//! Bacalhau orchestrator (the test suite's, on loopback) and through a gateway in front of it.
//!
//! ```sh
//! cargo run --example bacalhau_latency -- [JOBS]    # default 300
//! ```
//!
//! The fake finishes every job at once, so the figures measure the path, not the work. *Direct* is
//! what a Bacalhau client does to run a job and read its result: submit, read the job, read its
//! executions. *Gateway* is one `POST /` of a signed `/docker/run` invocation (signed before the clock
//! starts) until its receipt arrives: decoding, chain validation, the replay check, the Bacalhau
//! calls (a look-up by name, the submit, the reads), signing the receipt and committing it to
//! SQLite. Jobs run one at a time; each has its own image so none is found by name. Client, gateway
//! and fake share the machine: compare figures only within one run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;
use serde_json::json;
use ucan_gateway::cli::serve::{ServeArgs, start};
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::exec::bacalhau::{Auth, Client, ClientConfig};
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;

// The fake is shared with the integration tests; this harness uses only part of its API.
#[allow(dead_code)]
#[path = "../tests/it/support/fake_bacalhau.rs"]
mod fake_bacalhau;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let jobs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300);
    let warmup = 20;
    let fake = fake_bacalhau::FakeBacalhau::start(Duration::ZERO).await;

    // Direct: submit, read the job, read its executions.
    let client = Client::new(ClientConfig::new(fake.url(), Auth::None))?;
    let mut direct = Vec::with_capacity(jobs);
    for i in 0..jobs + warmup {
        let job = json!({
            "Name": format!("direct-{i}"), "Type": "batch", "Count": 1,
            "Tasks": [{ "Name": "main", "Engine": { "Type": "docker", "Params": { "Image": format!("alpine:{i}") } } }],
        });
        let started = Instant::now();
        let id = client.submit_once(&job).await?.job_id;
        let state = client.job(&id, false).await?;
        let executions = client.executions(&id).await?;
        let took = started.elapsed();
        anyhow::ensure!(
            state.is_some() && !executions.is_empty(),
            "job {id} did not run"
        );
        if i >= warmup {
            direct.push(took);
        }
    }

    // Through the gateway.
    let dir = tempfile::tempdir()?;
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "subjects = [\"{}\"]\n[[bacalhau]]\nname = \"net\"\nurl = \"{}\"\n[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"nondestructive\"\n[route.limits]\nmemory = \"1GiB\"\ntimeout = \"10m\"\n",
            operator.did(),
            fake.url()
        ),
    )?;
    let gateway = start(ServeArgs {
        listen: "127.0.0.1:0".parse()?,
        worker_threads: None,
        data_dir: dir.path().to_path_buf(),
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
    let bodies: Vec<Vec<u8>> = (0..jobs + warmup)
        .map(|i| {
            let args = BTreeMap::from([(
                "image".to_owned(),
                Ipld::String(format!("gateway/alpine:{i}")),
            )]);
            let inv = InvocationBuilder::new(
                operator.did(),
                Command::parse("/docker/run").expect("a valid command"),
                args,
            )
            .audience(gateway.did.clone())
            .expires(Some(unix_now() + 3600))
            .sign(&operator)?;
            Ok(Container {
                tokens: vec![inv.bytes().to_vec()],
            }
            .encode(Format::Raw))
        })
        .collect::<anyhow::Result<_>>()?;
    let http = reqwest::Client::new();
    let url = format!("http://{}/", gateway.addr);
    let mut through = Vec::with_capacity(jobs);
    for (i, body) in bodies.into_iter().enumerate() {
        let started = Instant::now();
        let response = http.post(&url).body(body).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let took = started.elapsed();
        anyhow::ensure!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if i >= warmup {
            through.push(took);
        }
    }
    gateway.stop().await?;

    direct.sort();
    through.sort();
    let (d50, d99) = (percentile(&direct, 0.50), percentile(&direct, 0.99));
    let (g50, g99) = (percentile(&through, 0.50), percentile(&through, 0.99));
    println!("jobs: {jobs} (after {warmup} warm-up), sequential, loopback");
    println!(
        "direct to the fake : p50 {:7.2} ms   p99 {:7.2} ms",
        ms(d50),
        ms(d99)
    );
    println!(
        "through the gateway: p50 {:7.2} ms   p99 {:7.2} ms",
        ms(g50),
        ms(g99)
    );
    println!(
        "added by the gateway: p50 {:+.2} ms ({:.2}x)   p99 {:+.2} ms ({:.2}x)",
        ms(g50) - ms(d50),
        g50.as_secs_f64() / d50.as_secs_f64(),
        ms(g99) - ms(d99),
        g99.as_secs_f64() / d99.as_secs_f64()
    );
    Ok(())
}
