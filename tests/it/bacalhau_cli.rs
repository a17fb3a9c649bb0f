//! The Bacalhau backend from the operator's and the caller's side: `serve --bacalhau` routes the
//! three commands (and the default policy offers none), `invoke --wait` follows an awaited job to
//! its final receipt, and `GET /receipts/{cid}` answers 202 with the job's state meanwhile.

use std::path::Path;
use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::{Running, ServeArgs, start};
use ucan_gateway::did::{KeyAlg, SigningKey};

use crate::bacalhau::{answer, gateway, ok_map, own, stored_receipt};
use crate::support::fake_bacalhau::FakeBacalhau;

#[tokio::test]
async fn serve_bacalhau_routes_the_three_commands_and_the_default_policy_has_none() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    let describe = async |gw: &Running| -> Vec<String> {
        let d: serde_json::Value = serde_json::from_slice(
            &reqwest::get(format!("http://{}/", gw.addr))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        d["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    c["command"].as_str().unwrap(),
                    c["backend"].as_str().unwrap()
                )
            })
            .collect()
    };
    let serve = async |dir: &Path, bacalhau: Option<String>| {
        start(ServeArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            worker_threads: None,
            data_dir: dir.to_path_buf(),
            key: None,
            policy: None,
            modules: None,
            leeway: 60,
            bacalhau,
            log_format: ucan_gateway::cli::serve::LogFormat::Text,
            http: Default::default(),
            store: Default::default(),
        })
        .await
        .unwrap()
    };

    // The embedded default needs no external service and offers none of the Bacalhau commands.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = serve(plain_dir.path(), None).await;
    assert!(
        !describe(&plain)
            .await
            .iter()
            .any(|c| c.contains("bacalhau"))
    );
    plain.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let gw = serve(dir.path(), Some(fake.url())).await;
    let commands = describe(&gw).await;
    for command in [
        "/docker/run bacalhau",
        "/wasm32-wasi/run bacalhau",
        "/bacalhau/job/run bacalhau",
        "/wasm/run wasm",
    ] {
        assert!(
            commands.contains(&command.to_owned()),
            "{command} in {commands:?}"
        );
    }
    // At startup the gateway asked the network whether it is alive, its version and its nodes.
    let started = Instant::now();
    let probed = |uri: &str| fake.recorded(|r| r.requests.iter().any(|(_, u)| u.ends_with(uri)));
    while !(probed("/agent/alive") && probed("/agent/version") && probed("/orchestrator/nodes")) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no startup probe"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The gateway's own key (subject "self") runs a job through it.
    let key = SigningKey::from_key_file(
        &std::fs::read_to_string(dir.path().join("gateway.key")).unwrap(),
    )
    .unwrap();
    let (r, _) = answer(
        &gw,
        own(&gw, &key, "/docker/run", r#"{"image": "alpine:3"}"#),
        None,
    )
    .await;
    assert_eq!(
        ok_map(&r).get("state"),
        Some(&Ipld::String("Completed".into()))
    );
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_wait_shows_the_job_and_prints_the_final_receipt() {
    let fake = FakeBacalhau::start(Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let key_file = dir.path().join("operator.key");
    std::fs::write(&key_file, operator.to_key_file()).unwrap();
    // A wait window far shorter than the job, so the first receipt carries the await effect.
    let gw = gateway(dir.path(), &operator, &fake.url(), "100ms").await;
    let url = format!("http://{}", gw.addr);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
            .args([
                "invoke",
                "--key",
                key_file.to_str().unwrap(),
                "--cmd",
                "/docker/run",
            ])
            .args([
                "--args",
                r#"{"image": "alpine:3", "outputs": {"/outputs": {}}}"#,
            ])
            .args(["--url", &url, "--wait"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("settled after"), "{stderr}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The final receipt, not the first: it answers the await invocation and is Completed.
    assert_eq!(printed["out"]["ok"]["state"], "Completed", "{printed}");
    assert!(
        printed["out"]["ok"]["executions"][0]["published"]["cid"]["/"].is_string(),
        "{printed}"
    );
    let ran: cid::Cid = printed["ran"].as_str().unwrap().parse().unwrap();
    let awaiting = stored_receipt(gw.addr, &gw.did, &ran, Duration::from_secs(1)).await;
    assert_eq!(awaiting.body.ran, ran);
    assert_ne!(printed["ran"], printed["task"]);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_pending_receipt_answers_202_with_the_job_state() {
    let fake = FakeBacalhau::start(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, &fake.url(), "5s").await;
    let (first, effects) = answer(
        &gw,
        own(&gw, &operator, "/docker/run", r#"{"image": "alpine:3"}"#),
        Some(0),
    )
    .await;
    let Some(Ipld::String(job)) = ok_map(&first).get("job") else {
        panic!()
    };
    let response = reqwest::get(format!("http://{}/receipts/{}", gw.addr, effects[0].cid()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["pending"]["job"], job.as_str());
    assert_eq!(body["pending"]["backend"], "net");
    // The watcher's view of the state moves on with the job.
    let started = Instant::now();
    loop {
        let r = reqwest::get(format!("http://{}/receipts/{}", gw.addr, effects[0].cid()))
            .await
            .unwrap();
        if r.status().as_u16() == 202 {
            let b: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            if b["pending"]["state"] == "Running" {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never saw Running"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_whose_request_was_cut_off_still_gets_its_receipt() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use ucan_gateway::config::OperatorPolicy;
    use ucan_gateway::exec::Executor;
    use ucan_gateway::exec::bacalhau::{
        Auth, BacalhauExecutor, BacalhauSettings, ClientConfig, Defaults,
    };
    use ucan_gateway::gateway::Gateway;
    use ucan_gateway::receipt::{Out, Receipt};
    use ucan_gateway::store::{SqliteStore, Store};
    use ucan_gateway::ucan::Command;
    use ucan_gateway::ucan::container::{Container, Format};
    use ucan_gateway::ucan::invocation::InvocationBuilder;
    use ucan_gateway::ucan::validate::unix_now;

    let fake = FakeBacalhau::start(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(KeyAlg::Ed25519);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("g.db")).await.unwrap());
    // A gateway with a long wait window: the request would wait for the job, were it not cut off.
    let make = |store: Arc<dyn Store>| {
        let key = SigningKey::from_key_file(&key.to_key_file()).unwrap();
        let url = fake.url();
        async move {
            let policy = OperatorPolicy::parse(
                &format!("[[bacalhau]]\nname = \"net\"\nurl = \"{url}\"\nwait = \"30s\"\n[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"nondestructive\"\n[route.limits]\nmemory = \"1GiB\"\ntimeout = \"10m\"\n"),
                "t.toml",
            )
            .unwrap();
            let settings = BacalhauSettings {
                name: "net".into(),
                client: ClientConfig::new(url, Auth::None),
                wait: Duration::from_secs(30),
                poll: Duration::from_millis(50),
                defaults: Defaults::default(),
            };
            let engine = Arc::new(ucan_gateway::exec::wasm::WasmEngine::new().unwrap());
            let host = ucan_gateway::gateway::host(&store, engine, &key.did());
            let executor = BacalhauExecutor::new(settings, key.did(), host.journal).unwrap();
            let executors: HashMap<String, Arc<dyn Executor>> =
                HashMap::from([("net".to_owned(), Arc::new(executor) as Arc<dyn Executor>)]);
            Gateway::new(key, policy, store, executors, 60)
                .await
                .unwrap()
        }
    };
    let first = make(Arc::clone(&store)).await;
    let watcher = Arc::clone(&first).watch_pending();
    let inv = InvocationBuilder::new(
        key.did(),
        Command::parse("/docker/run").unwrap(),
        crate::bacalhau::args(r#"{"image": "alpine:3", "outputs": {"/o": {}}}"#),
    )
    .expires(Some(unix_now() + 300))
    .sign(&key)
    .unwrap();
    let body = Container {
        tokens: vec![inv.bytes().to_vec()],
    }
    .encode(Format::Raw);
    let request = tokio::spawn({
        let gateway = Arc::clone(&first);
        async move { gateway.invoke(&body, None).await.map(drop) }
    });

    // The job is submitted and recorded; then the caller hangs up, and this process "dies".
    let started = Instant::now();
    while store.pending().await.unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the submitted job was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While its request runs, the job is the request's: the watcher does not poll it (the request
    // itself reads only the job, never its history).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let history = || {
        fake.recorded(|r| {
            r.requests
                .iter()
                .filter(|(_, u)| u.contains("/history"))
                .count()
        })
    };
    assert_eq!(
        history(),
        0,
        "the watcher left the in-flight request's job alone"
    );
    request.abort();
    let _ = request.await;
    watcher.abort();
    let _ = watcher.await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        store
            .receipt_by_invocation(inv.cid())
            .await
            .unwrap()
            .is_none(),
        "nobody settled it yet"
    );
    assert_eq!(fake.job_count(), 1);

    // A new gateway over the same store finishes the job and answers the original invocation.
    let second = make(Arc::clone(&store)).await;
    let watcher = Arc::clone(&second).watch_pending();
    let started = Instant::now();
    let stored = loop {
        if let Some(stored) = store.receipt_by_invocation(inv.cid()).await.unwrap() {
            break stored;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no receipt for the cut-off request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let receipt = Receipt::decode(&stored.bytes).unwrap();
    receipt.verify(Some(&key.did())).unwrap();
    assert_eq!(
        (receipt.body.ran, receipt.body.task),
        (inv.cid(), inv.payload.task_id())
    );
    let Out::Ok(Ipld::Map(out)) = &receipt.body.out else {
        panic!("{:?}", receipt.body.out)
    };
    assert_eq!(out.get("state"), Some(&Ipld::String("Completed".into())));
    assert!(store.pending().await.unwrap().is_empty());
    assert_eq!(fake.job_count(), 1, "finished, never resubmitted");
    assert!(history() > 0, "the watcher followed the orphaned job");
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pending_jobs_are_each_polled_within_a_few_seconds() {
    use ucan_gateway::exec::journal::JobRecord;
    use ucan_gateway::ipld::{RAW, cid_for};
    use ucan_gateway::store::{Commit, JobEntry, SqliteStore, Store};
    const JOBS: usize = 1000;
    // Every call to the network takes 20 ms: one job after another, a pass would take 20 s.
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    fake.set_latency(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("gateway.db"))
        .await
        .unwrap();
    let mut commit = Commit::default();
    for i in 0..JOBS {
        let record = JobRecord {
            submitted: false,
            ran: cid_for(RAW, format!("await {i}").as_bytes()),
            task: cid_for(RAW, format!("task {i}").as_bytes()),
            deadline: ucan_gateway::ucan::validate::unix_now() + 600,
            since: ucan_gateway::ucan::validate::unix_now(),
            note: None,
        };
        commit = commit.with_job(JobEntry {
            key: record.task,
            backend: "bacalhau".into(),
            job_id: format!("j-{i}"),
            payload: record.encode(),
        });
    }
    store.commit(commit).await.unwrap();
    store.close().await;

    let gw = start(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        worker_threads: None,
        data_dir: dir.path().to_path_buf(),
        key: None,
        policy: None,
        modules: None,
        leeway: 60,
        bacalhau: Some(fake.url()),
        log_format: ucan_gateway::cli::serve::LogFormat::Text,
        http: Default::default(),
        store: Default::default(),
    })
    .await
    .unwrap();
    let started = Instant::now();
    let polled = || {
        fake.recorded(|r| {
            let mut ids: Vec<&str> = r
                .requests
                .iter()
                .filter_map(|(_, uri)| uri.split("/jobs/").nth(1)?.split(['/', '?']).next())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        })
    };
    while polled() < JOBS {
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "{} of {JOBS} jobs polled after {:?}",
            polled(),
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await.unwrap();
}
