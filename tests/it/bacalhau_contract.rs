//! Contract tests: the Bacalhau client and the fake against Bacalhau's OpenAPI document. Requests the
//! client sends and answers the fake gives are checked against the document's schemas (with the wire
//! quirks the checker knows), and the fake's validation, defaults, paging and error body are checked
//! to be Bacalhau's, so the gateway's tests against the fake mean something about a real network.

use std::collections::BTreeMap;
use std::time::Duration;

use ipld_core::ipld::Ipld;
use reqwest::Method;
use serde_json::{Value, json};
use ucan_gateway::exec::bacalhau::mapping::{self, Caps, Defaults, JobRequest};
use ucan_gateway::exec::bacalhau::{Auth, BacalhauErrorKind, Client, ClientConfig};
use ucan_gateway::ipld::from_dag_json;

use crate::support::fake_bacalhau::{FakeBacalhau, Fault};
use crate::support::openapi::OpenApi;

fn client(url: &str, auth: Auth) -> Client {
    let mut config = ClientConfig::new(url, auth);
    config.backoff = Duration::from_millis(10);
    Client::new(config).unwrap()
}

fn docker_job(name: &str) -> Value {
    json!({
        "Name": name,
        "Type": "batch",
        "Count": 1,
        "Labels": { "ucan-task": "x" },
        "Tasks": [{
            "Name": "main",
            "Engine": { "Type": "docker", "Params": { "Image": "alpine:3", "Entrypoint": ["echo"], "Parameters": ["hi"] } },
            "Env": { "GREETING": "hi" },
            "Publisher": { "Type": "ipfs", "Params": {} },
            "ResultPaths": [{ "Name": "outputs", "Path": "/outputs" }],
            "InputSources": [{ "Source": { "Type": "urlDownload", "Params": { "URL": "https://example.com/x" } }, "Target": "/inputs/x" }],
            "Timeouts": { "ExecutionTimeout": 60, "TotalTimeout": 60 },
        }],
    })
}

async fn raw(url: String) -> Value {
    serde_json::from_slice(&reqwest::get(url).await.unwrap().bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn client_requests_and_fake_answers_match_the_openapi_document() {
    let api = OpenApi::bacalhau();
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    let c = client(&fake.url(), Auth::None);

    let submitted = c.submit_once(&docker_job("contract-1")).await.unwrap();
    let sent = fake.recorded(|r| r.submissions[0].clone());
    assert_eq!(
        api.check(&sent, "apimodels.PutJobRequest"),
        Vec::<String>::new()
    );
    tokio::time::sleep(Duration::from_millis(80)).await;

    let base = format!("{}/api/v1/orchestrator", fake.url());
    let id = &submitted.job_id;
    let cases = [
        (
            format!("{base}/jobs/{id}?include=history,executions"),
            "apimodels.GetJobResponse",
        ),
        (
            format!("{base}/jobs/{id}/history"),
            "apimodels.ListJobHistoryResponse",
        ),
        (
            format!("{base}/jobs/{id}/executions"),
            "apimodels.ListJobExecutionsResponse",
        ),
        (
            format!("{base}/jobs/{id}/results"),
            "apimodels.ListJobResultsResponse",
        ),
        (format!("{base}/nodes"), "apimodels.ListNodesResponse"),
        (
            format!("{}/api/v1/agent/alive", fake.url()),
            "apimodels.IsAliveResponse",
        ),
        (
            format!("{}/api/v1/agent/version", fake.url()),
            "apimodels.GetVersionResponse",
        ),
    ];
    for (url, schema) in cases {
        let value = raw(url.clone()).await;
        assert_eq!(
            api.check(&value, schema),
            Vec::<String>::new(),
            "{url}: {value}"
        );
    }
    let stopped = reqwest::Client::new()
        .delete(format!("{base}/jobs/{id}"))
        .body(r#"{"reason":"contract"}"#)
        .send()
        .await
        .unwrap();
    let stopped: Value = serde_json::from_slice(&stopped.bytes().await.unwrap()).unwrap();
    assert_eq!(
        api.check(&stopped, "apimodels.StopJobResponse"),
        Vec::<String>::new()
    );

    // The client reads them.
    let job = c.job(id, true).await.unwrap().unwrap();
    assert_eq!(job["Job"]["State"]["StateType"], "Completed");
    assert_eq!(
        c.job("contract-1", false).await.unwrap().unwrap()["Job"]["ID"],
        id.as_str(),
        "found by name"
    );
    assert!(c.job("no-such-job", false).await.unwrap().is_none());
    assert_eq!(c.executions(id).await.unwrap().len(), 1);
    assert_eq!(c.results(id).await.unwrap()[0]["Type"], "ipfs");
    assert_eq!(c.nodes().await.unwrap()[0]["Info"]["NodeID"], "node-0");
    assert_eq!(c.alive().await.unwrap(), "OK");
    assert_eq!(c.version().await.unwrap()["GitVersion"], "v1.9.3");
}

#[tokio::test]
async fn mapped_jobs_match_the_openapi_document() {
    let api = OpenApi::bacalhau();
    let caps = Caps {
        cpu_milli: 2000,
        memory_bytes: 1 << 31,
        disk_bytes: 1 << 34,
        gpu: 1,
        timeout: Duration::from_secs(600),
    };
    let meta: BTreeMap<String, Ipld> = match from_dag_json(
        r#"{"bacalhau/config": {"publisher": "s3", "labels": {"team": "a"}, "gpu": 1, "disk": 1000000,
            "constraints": [{"key": "arch", "operator": "=", "values": ["amd64"]}]}}"#,
    )
    .unwrap()
    {
        Ipld::Map(m) => m,
        _ => unreachable!(),
    };
    let cases = [
        (
            mapping::DOCKER_RUN,
            r#"{"image": "alpine:3", "mounts": {"/in": "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}, "outputs": {"/out": {}}}"#,
        ),
        (
            mapping::WASM_RUN,
            r#"{"module": {"/": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}, "entrypoint": "_start", "parameters": ["a"], "env": {"X": "1"}, "imports": ["https://example.com/lib.wasm"]}"#,
        ),
        (
            mapping::JOB_RUN,
            r#"{"job": {"Type": "batch", "Tasks": [{"Name": "t", "Engine": {"Type": "docker", "Params": {"Image": "alpine:3"}}, "Resources": {"CPU": "250m"}}]}}"#,
        ),
    ];
    for (command, args) in cases {
        let Ipld::Map(args) = from_dag_json(args).unwrap() else {
            unreachable!()
        };
        let request = JobRequest {
            command,
            args: &args,
            meta: &meta,
            ipvm_memory: None,
            ipvm_timeout: None,
            name: "ucan-test",
            labels: BTreeMap::from([("ucan-task".to_owned(), "t".to_owned())]),
        };
        let (job, timeout) = mapping::job(&request, &caps, &Defaults::default()).unwrap();
        assert_eq!(timeout, Duration::from_secs(600));
        let problems = api.check(&json!({ "Job": job }), "apimodels.PutJobRequest");
        assert!(problems.is_empty(), "{command}: {problems:?}\n{job}");
        assert_eq!(job["Name"], "ucan-test");
        assert_eq!(job["Labels"]["team"], "a");
        assert_eq!(job["Constraints"][0]["Operator"], "=");
        assert_eq!(job["Tasks"][0]["Publisher"]["Type"], "s3");
        assert_eq!(job["Tasks"][0]["Resources"]["GPU"], "1");
    }
    // The Wasm engine's v1.7+ parameters, and the module as an input source at the entry path.
    let Ipld::Map(args) = from_dag_json(r#"{"module": "https://example.com/m.wasm"}"#).unwrap()
    else {
        unreachable!()
    };
    let empty = BTreeMap::new();
    let request = JobRequest {
        command: mapping::WASM_RUN,
        args: &args,
        meta: &empty,
        ipvm_memory: None,
        ipvm_timeout: None,
        name: "n",
        labels: BTreeMap::new(),
    };
    let (job, _) = mapping::job(&request, &caps, &Defaults::default()).unwrap();
    let task = &job["Tasks"][0];
    assert_eq!(
        task["Engine"]["Params"]["EntryModule"],
        task["InputSources"][0]["Target"]
    );
    assert_eq!(
        task["InputSources"][0]["Source"],
        json!({ "Type": "urlDownload", "Params": { "URL": "https://example.com/m.wasm" } })
    );
    assert_eq!(
        task["Resources"],
        json!({ "CPU": "500m", "Memory": "536870912" }),
        "defaults when nothing is asked"
    );
}

#[tokio::test]
async fn the_fake_validates_like_bacalhau_and_answers_with_its_error_body() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    let c = client(&fake.url(), Auth::None);
    let rejected = async |edit: &dyn Fn(&mut Value), needle: &str| {
        let mut job = docker_job("v");
        edit(&mut job);
        let e = c.submit_once(&job).await.unwrap_err();
        assert_eq!(
            (e.kind, e.status, e.code.as_deref()),
            (BacalhauErrorKind::Api, Some(400), Some("BadRequest"))
        );
        assert!(e.message.contains(needle), "{needle}: {e}");
        assert!(e.request_id.is_some());
    };
    rejected(&|j| j["Type"] = json!("nightly"), "invalid job type").await;
    rejected(&|j| j["Tasks"] = json!([]), "exactly one task").await;
    rejected(
        &|j| j["Tasks"][0]["Env"] = json!({ "lower": "x" }),
        "invalid env var name",
    )
    .await;
    rejected(
        &|j| j["Tasks"][0]["Env"] = json!({ "BACALHAU_JOB": "x" }),
        "reserved BACALHAU_",
    )
    .await;
    rejected(
        &|j| j["Tasks"][0]["Publisher"] = json!({}),
        "publisher is required",
    )
    .await;
    rejected(&|j| j["Tasks"][0]["Engine"] = json!({}), "engine type").await;
    assert_eq!(fake.job_count(), 0);

    // Defaults: CPU 500m, Memory 512Mb, namespace, name; the same name again is the same job.
    let mut job = docker_job("d");
    job["Tasks"][0].as_object_mut().unwrap().remove("Resources");
    let first = c.submit_once(&job).await.unwrap();
    let again = c.submit_once(&job).await.unwrap();
    assert_eq!(first.job_id, again.job_id);
    assert_eq!(fake.job_count(), 1);
    let got = c.job(&first.job_id, false).await.unwrap().unwrap();
    assert_eq!(
        got["Job"]["Tasks"][0]["Resources"],
        json!({ "CPU": "500m", "Memory": "512Mb" })
    );
    assert_eq!(got["Job"]["Namespace"], "default");
}

#[tokio::test]
async fn history_pages_follow_next_token_through_the_states() {
    let fake = FakeBacalhau::start(Duration::from_millis(15)).await;
    let c = client(&fake.url(), Auth::None);
    let id = c.submit_once(&docker_job("h")).await.unwrap().job_id;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut states = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c.history(&id, token.as_deref()).await.unwrap();
        pages += 1;
        states.extend(
            page.items
                .iter()
                .map(|e| e["JobState"]["New"].as_str().unwrap().to_owned()),
        );
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(states, ["Pending", "Queued", "Running", "Completed"]);
    assert_eq!(pages, 2, "the fake pages two events at a time");
}

#[tokio::test]
async fn the_client_authenticates_retries_and_types_errors() {
    let fake = FakeBacalhau::start(Duration::from_millis(10)).await;
    fake.require_bearer("sekrit");
    let anonymous = client(&fake.url(), Auth::None);
    let e = anonymous.alive().await.unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(401), Some("Unauthorized"))
    );
    let keyed = client(&fake.url(), Auth::Bearer("sekrit".into()));
    assert_eq!(keyed.alive().await.unwrap(), "OK");
    assert_eq!(
        fake.recorded(|r| r.last_authorization.clone()).as_deref(),
        Some("Bearer sekrit")
    );
    let basic = client(
        &fake.url(),
        Auth::Basic {
            username: "u".into(),
            password: "p".into(),
        },
    );
    let _ = basic.alive().await;
    assert_eq!(
        fake.recorded(|r| r.last_authorization.clone()).as_deref(),
        Some("Basic dTpw")
    );

    // Reads are retried on 429, 503, 5xx and dropped connections, up to the attempt limit.
    for fault in [
        Fault::Status(429),
        Fault::Status(503),
        Fault::Status(500),
        Fault::DropBefore,
    ] {
        fake.fault(Some(Method::GET), fault);
        assert_eq!(keyed.alive().await.unwrap(), "OK", "{fault:?}");
    }
    for _ in 0..4 {
        fake.fault(Some(Method::GET), Fault::Status(503));
    }
    let e = keyed.alive().await.unwrap_err();
    assert_eq!(
        (e.status, e.code.as_deref()),
        (Some(503), Some("ServiceUnavailable"))
    );
    // A 429 with Retry-After is tried again no sooner than asked (the backoff alone would pause
    // 10 ms); one asking for longer than the client will wait ends the retries at once.
    fake.fault(Some(Method::GET), Fault::RetryAfter(1));
    let started = std::time::Instant::now();
    assert_eq!(keyed.alive().await.unwrap(), "OK");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    fake.fault(Some(Method::GET), Fault::RetryAfter(3600));
    let started = std::time::Instant::now();
    let e = keyed.alive().await.unwrap_err();
    assert_eq!(e.status, Some(429));
    assert_eq!(e.retry_after, Some(Duration::from_secs(3600)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A readiness probe tries once.
    fake.fault(Some(Method::GET), Fault::Status(503));
    assert!(keyed.alive_once(Duration::from_secs(2)).await.is_err());
    keyed.alive_once(Duration::from_secs(2)).await.unwrap();

    // A submit is never retried by the client itself.
    fake.fault(Some(Method::PUT), Fault::Status(503));
    let e = keyed.submit_once(&docker_job("s")).await.unwrap_err();
    assert!(e.is_transient());
    assert_eq!(fake.job_count(), 0);
    // A dropped answer leaves the outcome unknown.
    fake.fault(Some(Method::PUT), Fault::DropAfter);
    let e = keyed.submit_once(&docker_job("s")).await.unwrap_err();
    assert!(e.outcome_unknown(), "{e:?}");
    assert_eq!(fake.job_count(), 1);
    // Nothing listening at all.
    fake.stop();
    let e = keyed.alive().await.unwrap_err();
    assert_eq!(e.kind, BacalhauErrorKind::Connect);
}
