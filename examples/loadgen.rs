//! Load generator: drives a running gateway (or any server speaking one of its wire formats) from a
//! process of its own, so the server's figures are not mixed with the client's.
//!
//! ```sh
//! ucan-gateway serve &                                     # the embedded defaults
//! cargo run --release --example loadgen -- \
//!     --url http://127.0.0.1:8080 --root-key ucan-gateway-data/gateway.key --requests 20000 --connections 32
//! ```
//!
//! Before the clock starts it mints `--requests` distinct invocations of `/wasm/run` (`add` on a
//! 41-byte module sent inline), each resting on a chain of `--chain` delegations from the root key
//! (the subject the server acts for) to a fresh invoker of `--alg`. `--memo` gives them all the same
//! arguments (distinct nonces), so after the first every one is a memo hit. `--wire ucanto` sends
//! ucanto messages over CAR instead of UCAN 1.0 containers (for `@ucanto/server`, or the gateway's
//! ucanto transport). Then it keeps `--connections` HTTP/1.1 keep-alive connections busy with one
//! request in flight each, on one thread, never retrying a body, and reports throughput, latency
//! percentiles, the status histogram and its own CPU time; `--check K` verifies K sampled answers
//! (a receipt signed by the server, with the right sum). `--json` prints one JSON line instead.
//! Only loopback targets are accepted.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::receipt::{Out, Receipt};
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucanto::car::Car;
use ucan_gateway::ucanto::receipt::UcantoReceipt;
use ucan_gateway::ucanto::token::{Capability, Ucan, UcanFields};

/// `(func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)`, compiled.
const ADD_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x07, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01,
    0x7f, 0x03, 0x02, 0x01, 0x00, 0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, 0x0a, 0x09,
    0x01, 0x07, 0x00, 0x20, 0x00, 0x20, 0x01, 0x6a, 0x0b,
];

#[derive(Debug, Parser)]
#[command(about = "Drive a gateway with pre-minted invocations over keep-alive connections")]
struct Args {
    /// The server, on loopback: http://127.0.0.1:PORT.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The key of the subject the server acts for (the root of every chain).
    #[arg(long)]
    root_key: std::path::PathBuf,
    /// The server's DID (the invocations' audience). Default: asked of `GET /`.
    #[arg(long)]
    audience: Option<String>,
    /// Invocations to send.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Delegations between the root and the invoker.
    #[arg(long, default_value_t = 1)]
    chain: usize,
    /// The invoker's key type.
    #[arg(long, default_value = "ed25519")]
    alg: String,
    /// The same arguments in every invocation (memo hits after the first).
    #[arg(long)]
    memo: bool,
    /// `container` (UCAN 1.0) or `ucanto` (dag-ucan messages over CAR).
    #[arg(long, default_value = "container")]
    wire: String,
    /// Answers to verify (signature by the audience, result of the sum).
    #[arg(long, default_value_t = 50)]
    check: usize,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// One request: its body and the sum its receipt must hold.
struct Job {
    body: Bytes,
    sum: i128,
    cid: cid::Cid,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url: hyper::Uri = args.url.parse().context("--url")?;
    let host = url.host().unwrap_or_default().to_owned();
    if !(host == "127.0.0.1" || host == "localhost" || host == "[::1]" || host == "::1") {
        bail!("only loopback targets are accepted, not {host}");
    }
    let port = url.port_u16().unwrap_or(80);
    let alg = match args.alg.as_str() {
        "ed25519" => KeyAlg::Ed25519,
        "p256" => KeyAlg::P256,
        "secp256k1" => KeyAlg::Secp256k1,
        other => bail!("unknown --alg {other}"),
    };
    let root = SigningKey::from_key_file(&std::fs::read_to_string(&args.root_key)?)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let audience = match &args.audience {
        Some(did) => did.clone(),
        None => runtime.block_on(tokio::task::LocalSet::new().run_until(describe(&host, port)))?,
    };

    let minting = Instant::now();
    let jobs = mint(&args, &root, alg, &audience)?;
    if !args.json {
        eprintln!(
            "minted {} invocations in {:.1}s; sending over {} connections…",
            jobs.len(),
            minting.elapsed().as_secs_f64(),
            args.connections
        );
    }
    let report = runtime.block_on(drive(&args, &host, port, &audience, jobs))?;
    report.print(&args);
    if report.checked_bad > 0 {
        bail!("{} sampled answers did not check", report.checked_bad);
    }
    Ok(())
}

/// The server's DID, from `GET /`.
async fn describe(host: &str, port: u16) -> anyhow::Result<String> {
    let mut sender = connect(host, port).await?;
    let request = hyper::Request::get("/")
        .header("host", host)
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    json["did"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("GET / gave no did; pass --audience"))
}

/// The bodies, minted on every core.
fn mint(args: &Args, root: &SigningKey, alg: KeyAlg, audience: &str) -> anyhow::Result<Vec<Job>> {
    let invoker = SigningKey::generate(alg);
    let exp = unix_now() + 3600;
    let ucanto = match args.wire.as_str() {
        "container" => false,
        "ucanto" => true,
        other => bail!("unknown --wire {other}"),
    };
    // The chain: root → k1 → … → invoker, each link `/wasm/run` on the root's subject.
    let mut keys: Vec<SigningKey> = (1..args.chain)
        .map(|_| SigningKey::generate(KeyAlg::Ed25519))
        .collect();
    let holders: Vec<String> = keys
        .iter()
        .map(SigningKey::did)
        .chain(std::iter::once(invoker.did()))
        .collect();
    let mut issuers: Vec<&SigningKey> = vec![root];
    issuers.extend(keys.iter());
    let mut chain_1 = Vec::new();
    let mut chain_u: Vec<(cid::Cid, Vec<u8>)> = Vec::new();
    for (issuer, holder) in issuers.iter().zip(&holders) {
        if ucanto {
            let (cid, bytes) = Ucan::issue(
                &UcanFields {
                    aud: holder.clone(),
                    att: vec![Capability {
                        with: root.did(),
                        can: "wasm/run".into(),
                        nb: BTreeMap::new(),
                    }],
                    exp: Some(exp),
                    prf: chain_u
                        .last()
                        .map(|(cid, _)| vec![*cid])
                        .unwrap_or_default(),
                    ..UcanFields::default()
                },
                issuer,
            )?;
            chain_u.push((cid, bytes));
        } else {
            chain_1.push(
                DelegationBuilder::new(
                    holder.clone(),
                    Some(root.did()),
                    Command::parse("/wasm/run")?,
                )
                .expires(Some(exp))
                .sign(issuer)?,
            );
        }
    }
    keys.clear();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = args.requests.div_ceil(cores);
    let made: Vec<anyhow::Result<Vec<Job>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|t| {
                let (invoker, chain_1, chain_u) = (&invoker, &chain_1, &chain_u);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for i in t * per..((t + 1) * per).min(args.requests) {
                        let a = if args.memo { 20 } else { i as i128 };
                        let sum = a + 22;
                        let nb = BTreeMap::from([
                            ("module".to_owned(), Ipld::Bytes(ADD_WASM.to_vec())),
                            ("func".to_owned(), Ipld::String("add".into())),
                            (
                                "args".to_owned(),
                                Ipld::List(vec![Ipld::Integer(a), Ipld::Integer(22)]),
                            ),
                        ]);
                        out.push(if ucanto {
                            ucanto_job(invoker, audience, root, nb, chain_u, exp, i, sum)?
                        } else {
                            let inv = InvocationBuilder::new(
                                root.did(),
                                Command::parse("/wasm/run")?,
                                nb,
                            )
                            .audience(audience.to_owned())
                            .proofs(chain_1.iter().map(|d| d.cid()).collect())
                            .expires(Some(exp))
                            .sign(invoker)?;
                            let mut c = Container::default();
                            c.tokens.push(inv.bytes().to_vec());
                            c.tokens.extend(chain_1.iter().map(|d| d.bytes().to_vec()));
                            Job {
                                body: Bytes::from(c.encode(Format::Raw)),
                                sum,
                                cid: inv.cid(),
                            }
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut jobs = Vec::with_capacity(args.requests);
    for part in made {
        jobs.extend(part?);
    }
    Ok(jobs)
}

/// A ucanto message holding one invocation and its proof chain.
#[allow(clippy::too_many_arguments)]
fn ucanto_job(
    invoker: &SigningKey,
    audience: &str,
    root: &SigningKey,
    nb: BTreeMap<String, Ipld>,
    chain: &[(cid::Cid, Vec<u8>)],
    exp: i64,
    i: usize,
    sum: i128,
) -> anyhow::Result<Job> {
    let (inv, bytes) = Ucan::issue(
        &UcanFields {
            aud: audience.to_owned(),
            att: vec![Capability {
                with: root.did(),
                can: "wasm/run".into(),
                nb,
            }],
            exp: Some(exp),
            nnc: Some(format!("{i:x}")),
            prf: chain.last().map(|(cid, _)| vec![*cid]).unwrap_or_default(),
            ..UcanFields::default()
        },
        invoker,
    )?;
    let root_block = ucan_gateway::ipld::to_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "ucanto/message@7.0.0".to_owned(),
        Ipld::Map(BTreeMap::from([(
            "execute".to_owned(),
            Ipld::List(vec![Ipld::Link(inv)]),
        )])),
    )])))
    .map_err(|e| anyhow!(e))?;
    let root_cid = ucan_gateway::ipld::dag_cbor_cid(&root_block);
    let mut blocks = vec![(root_cid, root_block), (inv, bytes)];
    blocks.extend(chain.iter().cloned());
    Ok(Job {
        body: Bytes::from(Car::encode(root_cid, &blocks)),
        sum,
        cid: inv,
    })
}

async fn connect(
    host: &str,
    port: u16,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// What a run measured.
struct Report {
    sent: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
    errors: usize,
    cpu: Duration,
    checked: usize,
    checked_bad: usize,
}

async fn drive(
    args: &Args,
    host: &str,
    port: u16,
    audience: &str,
    jobs: Vec<Job>,
) -> anyhow::Result<Report> {
    let local = tokio::task::LocalSet::new();
    let content_type = if args.wire == "ucanto" {
        "application/vnd.ipld.car"
    } else {
        "application/octet-stream"
    };
    let step = (jobs.len() / args.check.max(1)).max(1);
    let expected: HashMap<usize, (i128, cid::Cid)> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| args.check > 0 && i % step == 0)
        .map(|(i, j)| (i, (j.sum, j.cid)))
        .collect();
    let queue = Rc::new(RefCell::new(
        jobs.into_iter().enumerate().rev().collect::<Vec<_>>(),
    ));
    let samples: Rc<RefCell<Vec<(usize, u16, Bytes)>>> = Rc::default();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let results = local
        .run_until(async {
            let mut workers = Vec::new();
            for _ in 0..args.connections {
                let mut sender = connect(host, port).await?;
                let (queue, samples, expected) =
                    (Rc::clone(&queue), Rc::clone(&samples), expected.clone());
                let host = host.to_owned();
                workers.push(tokio::task::spawn_local(async move {
                    let mut latencies = Vec::new();
                    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
                    let mut errors = 0;
                    loop {
                        let Some((i, job)) = queue.borrow_mut().pop() else {
                            break;
                        };
                        let request = hyper::Request::post("/")
                            .header("host", &host)
                            .header("content-type", content_type)
                            .header("accept", "*/*")
                            .body(Full::new(job.body))
                            .expect("a request");
                        let sent = Instant::now();
                        let answer = async {
                            sender.ready().await?;
                            let response = sender.send_request(request).await?;
                            let status = response.status().as_u16();
                            let body = response.into_body().collect().await?.to_bytes();
                            anyhow::Ok((status, body))
                        }
                        .await;
                        match answer {
                            Ok((status, body)) => {
                                latencies.push(sent.elapsed());
                                *statuses.entry(status).or_default() += 1;
                                if expected.contains_key(&i) {
                                    samples.borrow_mut().push((i, status, body));
                                }
                            }
                            // Never retried: the connection is gone, so is this worker.
                            Err(_) => {
                                errors += 1;
                                break;
                            }
                        }
                    }
                    (latencies, statuses, errors)
                }));
            }
            let mut all = Vec::new();
            for worker in workers {
                all.push(worker.await?);
            }
            anyhow::Ok(all)
        })
        .await?;
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let mut report = Report {
        sent: 0,
        elapsed,
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        errors: 0,
        cpu,
        checked: 0,
        checked_bad: 0,
    };
    for (latencies, statuses, errors) in results {
        report.sent += latencies.len();
        report.latencies.extend(latencies);
        for (s, n) in statuses {
            *report.statuses.entry(s).or_default() += n;
        }
        report.errors += errors;
    }
    report.latencies.sort();
    for (i, status, body) in samples.borrow().iter() {
        let (sum, cid) = expected[i];
        report.checked += 1;
        let good = *status == 200 && answer_checks(&args.wire, audience, body, sum, cid);
        if !good {
            report.checked_bad += 1;
            eprintln!("answer {i} does not check (status {status})");
        }
    }
    Ok(report)
}

/// Whether `body` holds a receipt signed by `audience` answering `cid` with `{ok: sum}`.
fn answer_checks(wire: &str, audience: &str, body: &[u8], sum: i128, cid: cid::Cid) -> bool {
    if wire == "ucanto" {
        let Ok(car) = Car::decode(body) else {
            return false;
        };
        return car.blocks.values().any(|block| {
            UcantoReceipt::verify(block, audience).is_ok_and(|ocm| {
                ocm.get("ran") == Some(&Ipld::Link(cid))
                    && matches!(ocm.get("out"), Some(Ipld::Map(out)) if out.get("ok") == Some(&Ipld::Integer(sum)))
            })
        });
    }
    let Ok(container) = Container::decode(body) else {
        return false;
    };
    container.tokens.first().is_some_and(|token| {
        Receipt::decode(token).is_ok_and(|r| {
            r.verify(Some(audience)).is_ok()
                && r.body.ran == cid
                && r.body.out == Out::Ok(Ipld::Integer(sum))
        })
    })
}

/// This process's CPU time so far (user and system), from `/proc/self/stat`.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Clock ticks are 100 a second on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }

    fn print(&self, args: &Args) {
        let rate = self.sent as f64 / self.elapsed.as_secs_f64();
        let cpu_per = self.cpu.as_secs_f64() * 1e6 / self.sent.max(1) as f64;
        if args.json {
            let statuses: BTreeMap<String, usize> = self
                .statuses
                .iter()
                .map(|(s, n)| (s.to_string(), *n))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "wire": args.wire, "connections": args.connections, "chain": args.chain,
                    "memo": args.memo, "alg": args.alg, "sent": self.sent, "errors": self.errors,
                    "seconds": self.elapsed.as_secs_f64(), "per_second": rate,
                    "p50_ms": self.percentile(0.5), "p90_ms": self.percentile(0.9),
                    "p99_ms": self.percentile(0.99), "max_ms": self.percentile(1.0),
                    "statuses": statuses, "client_cpu_us_per_request": cpu_per,
                    "checked": self.checked, "checked_bad": self.checked_bad,
                })
            );
            return;
        }
        println!(
            "{} answers in {:.2}s: {:.0}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.sent,
            self.elapsed.as_secs_f64(),
            rate,
            self.percentile(0.5),
            self.percentile(0.9),
            self.percentile(0.99),
            self.percentile(1.0)
        );
        println!(
            "statuses {:?}, connection errors {}, load generator CPU {:.0} µs per request, {} of {} sampled answers check",
            self.statuses,
            self.errors,
            cpu_per,
            self.checked - self.checked_bad,
            self.checked
        );
    }
}
