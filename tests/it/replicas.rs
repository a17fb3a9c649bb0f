//! Several `ucan-gateway serve` processes with one key and one policy over one PostgreSQL database
//! behave as one gateway: over real HTTP, each replica a real process of the binary. Run when
//! `UCAN_GATEWAY_TEST_POSTGRES` names a server (see `support/postgres.rs`).
//!
//! Every replica is started with `--store-refresh 60`: what it learns from other replicas within
//! these tests' bounds it learns from the store's announcements, not from looking again.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::receipt::{Out, Receipt};
use ucan_gateway::ucan::container::Container;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command as Cmd, Invocation};

use crate::gateway::{ADD_WAT, World, args, container, wasm, world, write_policy};
use crate::support::postgres::{fresh_schema, postgres_url};

/// One `serve` process.
pub(crate) struct Replica {
    child: Child,
    /// Where it listens.
    pub(crate) addr: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Kills the process at once (SIGKILL): nothing of it runs after this returns.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// What the replicas of one test share: the gateway key file, the policy and the store URL.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) key: PathBuf,
    pub(crate) policy: PathBuf,
    pub(crate) store: String,
    pub(crate) did: String,
    started: usize,
}

impl Cluster {
    /// A cluster whose policy serves `w.operator` (plus `extra_policy`), over a fresh schema of the
    /// test server; `None` when there is none (skipped).
    pub(crate) async fn new(w: &World, extra_policy: &str) -> Option<Cluster> {
        let base = postgres_url("replica tests over PostgreSQL")?;
        let store = fresh_schema(&base).await;
        let dir = tempfile::tempdir().unwrap();
        let gateway = SigningKey::generate(KeyAlg::Ed25519);
        let key = dir.path().join("gateway.key");
        std::fs::write(&key, format!("{}\n", gateway.to_key_file())).unwrap();
        let policy = write_policy(dir.path(), &w.operator, "", extra_policy);
        Some(Cluster {
            dir,
            key,
            policy,
            store,
            did: gateway.did(),
            started: 0,
        })
    }

    /// Starts one more replica with its own data directory and `extra` flags.
    pub(crate) fn start(&mut self, extra: &[&str]) -> Replica {
        self.started += 1;
        let data = self.dir.path().join(format!("replica-{}", self.started));
        spawn(&data, &self.key, &self.policy, &self.store, extra)
    }
}

/// Starts `serve` and waits for the line saying where it listens.
fn spawn(data: &Path, key: &Path, policy: &Path, store: &str, extra: &[&str]) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--store-refresh", "60"])
        .arg("--data-dir")
        .arg(data)
        .arg("--key")
        .arg(key)
        .arg("--policy")
        .arg(policy)
        .arg("--store")
        .arg(store)
        .args(extra)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (found, addr) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        // Read to the end, so the replica never blocks on a full pipe.
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                && json["message"] == "ucan-gateway serving"
            {
                let _ = found.send(json["addr"].as_str().unwrap_or_default().to_owned());
            } else if !line.contains("\"INFO\"") && !line.contains("\"DEBUG\"") {
                eprintln!("replica: {line}");
            }
        }
    });
    let addr = addr
        .recv_timeout(Duration::from_secs(20))
        .expect("the replica never said it was serving");
    Replica { child, addr }
}

/// `/wasm/run` of `add(a, b)` by the friend of `w`, addressed to the gateway `did`.
pub(crate) fn add(w: &World, did: &str, a: i128, b: i128) -> Invocation {
    invoke(w, did, add_args(a, b))
}

fn add_args(a: i128, b: i128) -> BTreeMap<String, Ipld> {
    args(vec![
        ("module", Ipld::Bytes(wasm(ADD_WAT))),
        ("func", Ipld::String("add".into())),
        ("args", Ipld::List(vec![Ipld::Integer(a), Ipld::Integer(b)])),
    ])
}

fn invoke(w: &World, did: &str, a: BTreeMap<String, Ipld>) -> Invocation {
    InvocationBuilder::new(w.operator.did(), Cmd::parse("/wasm/run").unwrap(), a)
        .audience(did.to_owned())
        .proofs(w.chain.iter().map(|d| d.cid()).collect())
        .expires(Some(unix_now() + 300))
        .sign(&w.friend)
        .unwrap()
}

/// The receipt among the tokens of an answer (which also carries the effects it issued).
fn receipt_in(tokens: &[Vec<u8>]) -> Receipt {
    tokens
        .iter()
        .find_map(|t| Receipt::decode(t).ok())
        .expect("an answer with a receipt")
}

/// Posts `body` to `replica`: the status, and the receipt or the refusal's error name.
pub(crate) async fn post(replica: &Replica, body: Vec<u8>) -> (u16, Result<Receipt, String>) {
    let response = reqwest::Client::new()
        .post(replica.url("/"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    if status == 200 {
        let tokens = Container::decode(&bytes).unwrap().tokens;
        return (status, Ok(receipt_in(&tokens)));
    }
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: {}", String::from_utf8_lossy(&bytes)));
    let name = json["error"]["name"].as_str().unwrap_or("").to_owned();
    (status, Err(name))
}

/// The receipt `replica` serves under `cid`, or the status it answers instead.
async fn get_receipt(replica: &Replica, cid: &str, query: &str) -> Result<Receipt, u16> {
    let response = reqwest::get(replica.url(&format!("/receipts/{cid}{query}")))
        .await
        .unwrap();
    if response.status().as_u16() != 200 {
        return Err(response.status().as_u16());
    }
    let tokens = Container::decode(&response.bytes().await.unwrap())
        .unwrap()
        .tokens;
    Ok(receipt_in(&tokens))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invocation_sent_to_three_replicas_at_once_is_answered_once() {
    let w = world();
    let Some(mut cluster) = Cluster::new(&w, "").await else {
        return;
    };
    let replicas = [cluster.start(&[]), cluster.start(&[]), cluster.start(&[])];
    for round in 0..5 {
        let inv = add(&w, &cluster.did, round, 1);
        let body = container(&inv, &w.chain);
        let answers =
            futures_util::future::join_all(replicas.iter().map(|r| post(r, body.clone()))).await;
        let mut ok = 0;
        for (status, answer) in &answers {
            match (status, answer) {
                (200, Ok(receipt)) => {
                    assert_eq!(receipt.body.out, Out::Ok(Ipld::Integer(round + 1)));
                    ok += 1;
                }
                (409, Err(name)) => assert_eq!(name, "Replayed"),
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(ok, 1, "round {round}: {answers:?}");
        // Afterwards every replica knows it as a replay, and serves the one receipt.
        for r in &replicas {
            let (status, _) = post(r, body.clone()).await;
            assert_eq!(status, 409);
            let stored = get_receipt(r, &inv.cid().to_string(), "").await.unwrap();
            assert_eq!(stored.body.ran, inv.cid());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_accepted_by_one_replica_is_honoured_by_another_within_a_second() {
    let w = world();
    let Some(mut cluster) = Cluster::new(&w, "").await else {
        return;
    };
    let (a, b) = (cluster.start(&[]), cluster.start(&[]));
    let (status, _) = post(&b, container(&add(&w, &cluster.did, 1, 1), &w.chain)).await;
    assert_eq!(status, 200, "B serves the chain before the revocation");

    let leaf = &w.chain[1];
    let revoke = InvocationBuilder::new(
        w.operator.did(),
        Cmd::parse("/ucan/revoke").unwrap(),
        args(vec![("revoke", Ipld::Link(leaf.cid()))]),
    )
    .audience(cluster.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.app)
    .unwrap();
    let (status, answer) = post(&a, container(&revoke, &w.chain)).await;
    assert_eq!(status, 200, "{answer:?}");
    let revoked_at = Instant::now();
    let mut n = 2;
    loop {
        let (status, answer) = post(&b, container(&add(&w, &cluster.did, n, 1), &w.chain)).await;
        if status == 403 {
            assert_eq!(answer.unwrap_err(), "Revoked");
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "replica B still honours the revoked delegation after {:?}",
            revoked_at.elapsed()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A replica started afterwards knows it from the start.
    b.kill();
    let c = cluster.start(&[]);
    let (status, answer) = post(&c, container(&add(&w, &cluster.did, 99, 1), &w.chain)).await;
    assert_eq!((status, answer.unwrap_err().as_str()), (403, "Revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_memo_and_blobs_written_by_one_replica_are_served_by_another() {
    let w = world();
    let Some(mut cluster) = Cluster::new(&w, "").await else {
        return;
    };
    let (a, b) = (cluster.start(&[]), cluster.start(&[]));

    // A receipt stored by A is served by B, by invocation and by task.
    let first = add(&w, &cluster.did, 20, 22);
    let (status, answer) = post(&a, container(&first, &w.chain)).await;
    assert_eq!(status, 200);
    let original = answer.unwrap();
    for cid in [first.cid(), first.payload.task_id()] {
        let got = get_receipt(&b, &cid.to_string(), "").await.unwrap();
        assert_eq!(got.cid(), original.cid());
    }

    // The same work sent to B is answered from A's run.
    let again = add(&w, &cluster.did, 20, 22);
    let (status, answer) = post(&b, container(&again, &w.chain)).await;
    assert_eq!(status, 200);
    let memoized = answer.unwrap();
    assert_eq!(memoized.body.out, Out::Ok(Ipld::Integer(42)));
    assert_eq!(
        memoized.body.meta.get("gateway/memoized"),
        Some(&Ipld::Link(original.cid()))
    );

    // A module uploaded to A runs on B by its CID.
    let module = wasm(
        r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.sub))"#,
    );
    let put = InvocationBuilder::new(
        w.operator.did(),
        Cmd::parse("/blob/put").unwrap(),
        args(vec![("bytes", Ipld::Bytes(module))]),
    )
    .audience(cluster.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    let (status, answer) = post(&a, container(&put, &[])).await;
    assert_eq!(status, 200, "{answer:?}");
    let Out::Ok(Ipld::Map(ok)) = answer.unwrap().body.out else {
        panic!("no blob CID")
    };
    let Some(Ipld::Link(cid)) = ok.get("cid") else {
        panic!("{ok:?}")
    };
    let mut linked = add_args(50, 8);
    linked.insert("module".into(), Ipld::Link(*cid));
    let (status, answer) = post(&b, container(&invoke(&w, &cluster.did, linked), &w.chain)).await;
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(answer.unwrap().body.out, Out::Ok(Ipld::Integer(42)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_one_replica_wakes_when_another_stores_the_receipt() {
    let w = world();
    let Some(mut cluster) = Cluster::new(&w, "").await else {
        return;
    };
    let (a, b) = (cluster.start(&[]), cluster.start(&[]));
    for round in 0..3 {
        let inv = add(&w, &cluster.did, round, 2);
        let cid = inv.cid().to_string();
        let waiting = tokio::spawn({
            let url = b.url(&format!("/receipts/{cid}?follow=join&wait=30"));
            async move {
                let response = reqwest::get(url).await.unwrap();
                let status = response.status().as_u16();
                let body = response.bytes().await.unwrap();
                (status, body, Instant::now())
            }
        });
        // The wait is registered on B before A answers.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished());
        let (status, answer) = post(&a, container(&inv, &w.chain)).await;
        assert_eq!(status, 200);
        let answered = Instant::now();
        let (status, body, woke) = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the wait on B never ended")
            .unwrap();
        assert_eq!(status, 200);
        let tokens = Container::decode(&body).unwrap().tokens;
        assert_eq!(receipt_in(&tokens).cid(), answer.unwrap().cid());
        let late = woke.saturating_duration_since(answered);
        assert!(
            late < Duration::from_secs(1),
            "round {round}: B answered {late:?} after A stored the receipt"
        );
    }
}

/// The holders of the pending jobs in the cluster's schema, as the database records them.
async fn job_holders(cluster: &Cluster) -> Vec<Option<String>> {
    let base = postgres_url("replica tests over PostgreSQL").unwrap();
    let schema = cluster.store.rsplit("schema=").next().unwrap().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    let rows: Vec<(Option<String>,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT holder FROM \"{schema}\".pending_jobs ORDER BY seq"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter().map(|(h,)| h).collect()
}

/// Whether the lease holder `holder` is the process `pid`.
fn held_by(holder: &str, pid: u32) -> bool {
    holder.split('/').nth(1) == Some(pid.to_string().as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_job_is_watched_by_one_replica_and_taken_over_when_it_is_killed() {
    let fake = crate::support::fake_bacalhau::FakeBacalhau::start(Duration::from_secs(2)).await;
    // Every call to the network takes longer than the lease, so one pass over the job does too.
    fake.set_latency(Duration::from_millis(2000));
    let w = world();
    let extra = format!(
        "[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"nondestructive\"\n\
         [route.limits]\nmemory = \"2GiB\"\ntimeout = \"10m\"\n\
         [[bacalhau]]\nname = \"net\"\nurl = \"{}\"\nwait = \"5s\"\n",
        fake.url()
    );
    let Some(mut cluster) = Cluster::new(&w, &extra).await else {
        return;
    };
    let replicas = vec![
        cluster.start(&["--job-lease", "1"]),
        cluster.start(&["--job-lease", "1"]),
    ];
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Cmd::parse("/docker/run").unwrap(),
        crate::bacalhau::args(r#"{"image": "alpine:3", "outputs": {"/o": {}}}"#),
    )
    .audience(cluster.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.operator)
    .unwrap();
    // Answered at once with a join effect awaiting the job.
    let response = reqwest::Client::new()
        .post(replicas[0].url("/"))
        .header("Prefer", "wait=0")
        .body(container(&inv, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let tokens = Container::decode(&response.bytes().await.unwrap())
        .unwrap()
        .tokens;
    let first = receipt_in(&tokens);
    let join = first
        .body
        .fx
        .join
        .as_ref()
        .expect("a join effect")
        .task_id();

    // One replica leases the job and keeps renewing it; the other leaves it alone.
    let started = Instant::now();
    let holder = loop {
        if let [Some(holder)] = job_holders(&cluster).await.as_slice() {
            break holder.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "nobody leased the job: {:?}",
            job_holders(&cluster).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pids: Vec<u32> = replicas.iter().map(|r| r.child.id()).collect();
    let watcher = pids
        .iter()
        .position(|pid| held_by(&holder, *pid))
        .unwrap_or_else(|| panic!("{holder} is none of {pids:?}"));
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            job_holders(&cluster).await,
            vec![Some(holder.clone())],
            "the lease moved while its holder lived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kill the watcher: the other replica takes the job over once the lease ends, and delivers the
    // final receipt.
    let mut replicas = replicas;
    let survivor = replicas.remove(1 - watcher);
    replicas.remove(0).kill();
    let killed = Instant::now();
    loop {
        if let [Some(now)] = job_holders(&cluster).await.as_slice()
            && held_by(now, survivor.child.id())
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "the job was not taken over within the lease: {:?}",
            job_holders(&cluster).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last = get_receipt(&survivor, &join.to_string(), "?follow=join&wait=30")
        .await
        .unwrap();
    assert_eq!(last.body.task, join);
    let Out::Ok(Ipld::Map(out)) = &last.body.out else {
        panic!("{:?}", last.body.out)
    };
    assert_eq!(out.get("state"), Some(&Ipld::String("Completed".into())));
    assert_eq!(job_holders(&cluster).await, Vec::<Option<String>>::new());
    assert_eq!(fake.job_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destructive_task_started_on_one_replica_is_never_started_on_another() {
    let w = world();
    let extra = "[[route]]\ncommand = \"/wasm/once\"\nbackend = \"wasm\"\neffect = \"destructive\"\n\
                 [route.limits]\nfuel = 100_000_000_000\n";
    let Some(mut cluster) = Cluster::new(&w, extra).await else {
        return;
    };
    let (a, b) = (cluster.start(&[]), cluster.start(&[]));
    // One task (subject, command, arguments, nonce), invoked twice: a spin that runs until the
    // route's 2 s timeout stops it.
    let spin = wasm(r#"(module (func (export "spin") (loop br 0)))"#);
    let of_task = |exp: i64| {
        InvocationBuilder::new(
            w.operator.did(),
            Cmd::parse("/wasm/once").unwrap(),
            args(vec![
                ("module", Ipld::Bytes(spin.clone())),
                ("func", Ipld::String("spin".into())),
                ("args", Ipld::List(vec![])),
            ]),
        )
        .audience(cluster.did.clone())
        .nonce(b"one task".to_vec())
        .expires(Some(exp))
        .sign(&w.operator)
        .unwrap()
    };
    let (first, second, third) = (
        of_task(unix_now() + 300),
        of_task(unix_now() + 301),
        of_task(unix_now() + 302),
    );
    assert_eq!(first.payload.task_id(), second.payload.task_id());
    assert_ne!(first.cid(), second.cid());

    let running = tokio::spawn({
        let body = container(&first, &[]);
        let url = a.url("/");
        async move {
            let response = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!running.is_finished(), "the spin is still running on A");
    let (status, answer) = post(&b, container(&second, &[])).await;
    assert_eq!(
        (status, answer.unwrap_err().as_str()),
        (409, "TaskInProgress"),
        "B must not start a task A holds"
    );

    let (status, body) = running.await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let tokens = Container::decode(&body).unwrap().tokens;
    let ran = receipt_in(&tokens);
    // Once A's run is settled, B answers the task with A's outcome, without running it.
    let (status, answer) = post(&b, container(&third, &[])).await;
    assert_eq!(status, 200);
    let answer = answer.unwrap();
    assert_eq!(answer.body.out, ran.body.out);
    assert_eq!(answer.body.ran, third.cid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_database_goes_away_answers_503_and_serves_again_when_it_is_back() {
    use ucan_gateway::store::{PostgresStore, ReceiptStore};
    let w = world();
    let Some(mut cluster) = Cluster::new(&w, "").await else {
        return;
    };
    let relay = crate::support::postgres::Relay::to(&cluster.store).await;
    let direct = PostgresStore::open(&cluster.store).await.unwrap();
    cluster.store = format!(
        "{}&connect_timeout=1&statement_timeout=2s",
        crate::support::postgres::through(&cluster.store, relay.addr)
    );
    let replica = cluster.start(&[]);
    let (status, _) = post(&replica, container(&add(&w, &cluster.did, 1, 2), &w.chain)).await;
    assert_eq!(status, 200);

    relay.cut();
    let inv = add(&w, &cluster.did, 3, 4);
    let body = container(&inv, &w.chain);
    let (status, answer) = post(&replica, body.clone()).await;
    assert_eq!(
        (status, answer.unwrap_err().as_str()),
        (503, "StoreUnavailable")
    );
    let started = Instant::now();
    while reqwest::get(replica.url("/readyz")).await.unwrap().status() != 503 {
        assert!(started.elapsed() < Duration::from_secs(6), "still ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing of the failed request was written: it is run when sent again (below), not refused as
    // a replay.
    assert!(
        direct
            .receipt_by_invocation(inv.cid())
            .await
            .unwrap()
            .is_none()
    );

    relay.restore();
    let started = Instant::now();
    let receipt = loop {
        match post(&replica, body.clone()).await {
            (200, Ok(receipt)) => break receipt,
            (503, _) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("after the database came back: {other:?}"),
        }
    };
    assert_eq!(receipt.body.out, Out::Ok(Ipld::Integer(7)));
    assert!(
        direct
            .receipt_by_invocation(inv.cid())
            .await
            .unwrap()
            .is_some()
    );
}
