//! A fake Bacalhau orchestrator on loopback, faithful to the v1 API where the gateway touches it:
//! Bacalhau's request validation on submit (job `Type`, one task, `Env` keys uppercase and not
//! `BACALHAU_`, `ResultPaths` need a publisher, input sources need a type and target), its
//! defaults (CPU `500m`, Memory `512Mb`, namespace, name = id), a job that resubmitted under the same
//! `Name` stays one job, states Pending → Queued → Running → Completed/Failed driven by time with
//! history events and `NextToken` paging, executions with run output, a published result and
//! `CreateTime`/`ModifyTime` (nanoseconds: when the job began running and when it ended), stop
//! with a JSON reason, nodes, agent alive/version, and Bacalhau's error body
//! `{Status, Message, RequestID, Code, Component}`.
//!
//! Wire forms follow the real server, not the OpenAPI document, where they differ: job states and
//! history `Type` are strings, execution states integers.
//!
//! How a job behaves is chosen by its image (or Wasm entry point): one containing `fail` fails,
//! `hang` never finishes, anything else completes. Faults are injected per request: a latency on
//! every call, and a queue of one-off faults (an error status, or a connection dropped before or
//! after the request was acted on).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A one-off fault for the next matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and Bacalhau's error body, doing nothing.
    Status(u16),
    /// Answer 429 with `Retry-After` of this many seconds, doing nothing.
    RetryAfter(u64),
    /// Close the connection without answering, doing nothing.
    DropBefore,
    /// Act on the request, then close the connection without answering (the answer is lost).
    DropAfter,
}

/// How a job evolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Complete,
    Fail,
    Hang,
}

struct Job {
    id: String,
    spec: Value,
    created: Instant,
    /// `created` on the wall clock, in nanoseconds since the epoch, for the times executions report.
    created_ns: i64,
    behaviour: Behaviour,
    stopped: Option<(Duration, String)>,
}

const STATES: [&str; 4] = ["Pending", "Queued", "Running", "Done"];

impl Job {
    /// The job-level states it went through so far, with when each began.
    fn timeline(&self, step: Duration) -> Vec<(&'static str, Duration)> {
        let age = self.created.elapsed();
        let mut out = Vec::new();
        for (i, name) in STATES.iter().enumerate() {
            let at = step * u32::try_from(i).unwrap_or(0);
            if let Some((stopped_at, _)) = &self.stopped
                && *stopped_at <= at
            {
                out.push(("Stopped", *stopped_at));
                return out;
            }
            if at > age {
                break;
            }
            let name = match (*name, self.behaviour) {
                ("Done", Behaviour::Complete) => "Completed",
                ("Done", Behaviour::Fail) => "Failed",
                ("Done", Behaviour::Hang) => break,
                (n, _) => n,
            };
            out.push((name, at));
        }
        if let Some((stopped_at, _)) = &self.stopped {
            out.push(("Stopped", *stopped_at));
        }
        out
    }

    fn state(&self, step: Duration) -> &'static str {
        self.timeline(step).last().map_or("Pending", |(s, _)| s)
    }
}

/// Everything the fake knows; tests read it to check what the gateway sent.
#[derive(Default)]
pub struct Recorded {
    /// Every submit body received (valid or not), in order.
    pub submissions: Vec<Value>,
    /// Every stop: job id and JSON body.
    pub stops: Vec<(String, Value)>,
    /// Every request: method and path with query.
    pub requests: Vec<(String, String)>,
    /// The `Authorization` header of the last request.
    pub last_authorization: Option<String>,
}

struct Inner {
    jobs: Vec<Job>,
    recorded: Recorded,
    faults: VecDeque<(Option<Method>, Fault)>,
    latency: Duration,
    step: Duration,
    page: usize,
    bearer: Option<String>,
    requests_seen: u64,
    down: bool,
}

/// A running fake.
pub struct FakeBacalhau {
    /// Where it listens.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBacalhau {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeBacalhau {
    /// A fake whose jobs move one state every `step`.
    pub async fn start(step: Duration) -> FakeBacalhau {
        Self::start_on("127.0.0.1:0".parse().unwrap(), step).await
    }

    /// A fake on a chosen address (to come back on the same port after [`FakeBacalhau::stop`]).
    pub async fn start_on(addr: SocketAddr, step: Duration) -> FakeBacalhau {
        let inner = Arc::new(Mutex::new(Inner {
            jobs: Vec::new(),
            recorded: Recorded::default(),
            faults: VecDeque::new(),
            latency: Duration::ZERO,
            step,
            page: 2,
            bearer: None,
            requests_seen: 0,
            down: false,
        }));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeBacalhau {
            addr,
            inner,
            server,
        }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Goes down: new connections are refused, and requests on connections already open are
    /// dropped unanswered.
    pub fn stop(&self) {
        self.inner.lock().unwrap().down = true;
        self.server.abort();
    }

    /// Adds `latency` to every request.
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().unwrap().latency = latency;
    }

    /// Requires `Authorization: Bearer <key>`.
    pub fn require_bearer(&self, key: &str) {
        self.inner.lock().unwrap().bearer = Some(key.to_owned());
    }

    /// Queues a fault for the next request with `method` (any method when `None`).
    pub fn fault(&self, method: Option<Method>, fault: Fault) {
        self.inner.lock().unwrap().faults.push_back((method, fault));
    }

    /// What the fake received so far.
    pub fn recorded<T>(&self, read: impl FnOnce(&Recorded) -> T) -> T {
        read(&self.inner.lock().unwrap().recorded)
    }

    /// How many jobs exist.
    pub fn job_count(&self) -> usize {
        self.inner.lock().unwrap().jobs.len()
    }

    /// The state of job `id`.
    pub fn state_of(&self, id: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap();
        let step = inner.step;
        inner
            .jobs
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.state(step).to_owned())
    }
}

fn error(status: u16, code: &str, message: &str, request: u64) -> Response {
    let body = json!({
        "Status": status,
        "Message": message,
        "RequestID": format!("req-{request}"),
        "Code": code,
        "Component": "Orchestrator",
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

/// Closes the connection without an answer: unwinding the connection's task drops its socket.
/// `resume_unwind` skips the panic hook, so nothing is printed.
fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("fake bacalhau: connection dropped"))
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (latency, fault, request) = {
        let mut g = inner.lock().unwrap();
        if g.down {
            drop(g);
            drop_connection();
        }
        g.requests_seen += 1;
        g.recorded
            .requests
            .push((method.to_string(), uri.to_string()));
        g.recorded.last_authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let pos = g
            .faults
            .iter()
            .position(|(m, _)| m.as_ref().is_none_or(|m| *m == method));
        let fault = pos.and_then(|i| g.faults.remove(i)).map(|(_, f)| f);
        (g.latency, fault, g.requests_seen)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Status(status)) => {
            let code = match status {
                429 => "TooManyRequests",
                503 => "ServiceUnavailable",
                _ => "InternalServerError",
            };
            return error(status, code, "injected fault", request);
        }
        Some(Fault::RetryAfter(secs)) => {
            let mut response = error(429, "TooManyRequests", "injected fault", request);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
            return response;
        }
        Some(Fault::DropBefore) => drop_connection(),
        _ => {}
    }
    let response = {
        let mut g = inner.lock().unwrap();
        if let Some(key) = &g.bearer {
            let expected = format!("Bearer {key}");
            if g.recorded.last_authorization.as_deref() != Some(expected.as_str()) {
                return error(401, "Unauthorized", "missing or invalid API key", request);
            }
        }
        route(&mut g, &method, &uri, &body, request)
    };
    if fault == Some(Fault::DropAfter) {
        drop_connection();
    }
    response
}

fn query<'a>(uri: &'a Uri, key: &str) -> Option<&'a str> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn route(g: &mut Inner, method: &Method, uri: &Uri, body: &[u8], request: u64) -> Response {
    let path = uri.path();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["api", "v1", "agent", "alive"]) => {
            axum::Json(json!({ "Status": "OK" })).into_response()
        }
        ("GET", ["api", "v1", "agent", "version"]) => axum::Json(json!({
            "Major": "1", "Minor": "9", "GitVersion": "v1.9.3", "GitCommit": "fake",
            "BuildDate": "2025-01-01T00:00:00Z", "GOOS": "linux", "GOARCH": "amd64",
        }))
        .into_response(),
        ("GET", ["api", "v1", "orchestrator", "nodes"]) => axum::Json(json!({
            "Nodes": [{
                "Info": { "NodeID": "node-0", "NodeType": 2, "Labels": { "arch": "amd64" } },
                "ConnectionState": { "LastHeartbeat": "2025-01-01T00:00:00Z" },
            }],
            "NextToken": "",
        }))
        .into_response(),
        ("PUT", ["api", "v1", "orchestrator", "jobs"]) => submit(g, body, request),
        ("GET", ["api", "v1", "orchestrator", "jobs", id]) => {
            let include = query(uri, "include").unwrap_or("");
            with_job(g, id, request, |g, job| {
                let mut out = json!({ "Job": job_json(job, g.step) });
                if include.contains("history") {
                    out["History"] = json!({ "Items": history(job, g.step), "NextToken": "" });
                }
                if include.contains("executions") {
                    out["Executions"] =
                        json!({ "Items": executions(job, g.step), "NextToken": "" });
                }
                axum::Json(out).into_response()
            })
        }
        ("DELETE", ["api", "v1", "orchestrator", "jobs", id]) => {
            let reason: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let id = (*id).to_owned();
            g.recorded.stops.push((id.clone(), reason.clone()));
            let step = g.step;
            let Some(job) = g
                .jobs
                .iter_mut()
                .find(|j| j.id == id || j.spec["Name"] == id.as_str())
            else {
                return error(404, "NotFound", &format!("job not found: {id}"), request);
            };
            let over = matches!(job.state(step), "Completed" | "Failed" | "Stopped");
            if !over {
                let why = reason["reason"].as_str().unwrap_or("").to_owned();
                job.stopped = Some((job.created.elapsed(), why));
            }
            axum::Json(json!({ "EvaluationID": format!("eval-stop-{}", job.id) })).into_response()
        }
        ("GET", ["api", "v1", "orchestrator", "jobs", id, "history"]) => {
            let from: usize = query(uri, "next_token")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let page = g.page;
            with_job(g, id, request, |g, job| {
                let all = history(job, g.step);
                let end = (from + page).min(all.len());
                let items = all.get(from..end).unwrap_or(&[]).to_vec();
                let next = if end < all.len() {
                    end.to_string()
                } else {
                    String::new()
                };
                axum::Json(json!({ "Items": items, "NextToken": next })).into_response()
            })
        }
        ("GET", ["api", "v1", "orchestrator", "jobs", id, "executions"]) => {
            with_job(g, id, request, |g, job| {
                axum::Json(json!({ "Items": executions(job, g.step), "NextToken": "" }))
                    .into_response()
            })
        }
        ("GET", ["api", "v1", "orchestrator", "jobs", id, "results"]) => {
            with_job(g, id, request, |g, job| {
                let items: Vec<Value> = executions(job, g.step)
                    .into_iter()
                    .filter_map(|e| e.get("PublishedResult").cloned())
                    .collect();
                axum::Json(json!({ "Items": items, "NextToken": "" })).into_response()
            })
        }
        _ => error(
            404,
            "NotFound",
            &format!("no route {method} {path}"),
            request,
        ),
    }
}

fn with_job(
    g: &mut Inner,
    id: &str,
    request: u64,
    f: impl FnOnce(&Inner, &Job) -> Response,
) -> Response {
    match g
        .jobs
        .iter()
        .position(|j| j.id == id || j.spec["Name"] == id)
    {
        Some(i) => {
            let g: &Inner = g;
            f(g, &g.jobs[i])
        }
        None => error(404, "NotFound", &format!("job not found: {id}"), request),
    }
}

/// Bacalhau's submit validation, then defaults; an existing job with the same name is returned.
fn submit(g: &mut Inner, body: &[u8], request: u64) -> Response {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    g.recorded.submissions.push(parsed.clone());
    let bad = |m: &str| error(400, "BadRequest", m, request);
    let Some(mut job) = parsed.get("Job").filter(|j| j.is_object()).cloned() else {
        return bad("invalid request body: missing Job");
    };
    match job["Type"].as_str() {
        Some("batch" | "ops" | "daemon" | "service") => {}
        other => return bad(&format!("invalid job type: {other:?}")),
    }
    let Some(tasks) = job["Tasks"].as_array().filter(|t| t.len() == 1).cloned() else {
        return bad("job must have exactly one task");
    };
    let mut task = tasks[0].clone();
    if task["Name"].as_str().is_none_or(str::is_empty) {
        return bad("task name is required");
    }
    if task["Engine"]["Type"].as_str().is_none_or(str::is_empty) {
        return bad("task engine type is required");
    }
    if let Some(env) = task["Env"].as_object() {
        for key in env.keys() {
            let upper = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !key.starts_with(|c: char| c.is_ascii_digit());
            if !upper {
                return bad(&format!(
                    "invalid env var name {key:?}: must be uppercase letters, digits and _"
                ));
            }
            if key.starts_with("BACALHAU_") {
                return bad(&format!(
                    "env var {key:?} uses the reserved BACALHAU_ prefix"
                ));
            }
        }
    }
    let has_results = task["ResultPaths"]
        .as_array()
        .is_some_and(|p| !p.is_empty());
    if has_results && task["Publisher"]["Type"].as_str().is_none_or(str::is_empty) {
        return bad("publisher is required when ResultPaths are set");
    }
    for p in task["ResultPaths"].as_array().into_iter().flatten() {
        if p["Name"].as_str().is_none_or(str::is_empty)
            || p["Path"].as_str().is_none_or(str::is_empty)
        {
            return bad("result path needs a Name and a Path");
        }
    }
    for s in task["InputSources"].as_array().into_iter().flatten() {
        if s["Source"]["Type"].as_str().is_none_or(str::is_empty)
            || s["Target"].as_str().is_none_or(str::is_empty)
        {
            return bad("input source needs a Source.Type and a Target");
        }
    }
    let resources = task["Resources"].as_object().cloned().unwrap_or_default();
    let mut resources = Value::Object(resources);
    if resources["CPU"].as_str().is_none_or(str::is_empty) {
        resources["CPU"] = json!("500m");
    }
    if resources["Memory"].as_str().is_none_or(str::is_empty) {
        resources["Memory"] = json!("512Mb");
    }
    task["Resources"] = resources;

    let name = job["Name"].as_str().unwrap_or("").to_owned();
    if !name.is_empty()
        && let Some(existing) = g.jobs.iter().find(|j| j.spec["Name"] == name.as_str())
    {
        return axum::Json(json!({
            "JobID": existing.id,
            "EvaluationID": format!("eval-{}", existing.id),
            "Warnings": ["a job with this name exists; its spec is unchanged"],
        }))
        .into_response();
    }
    let id = format!("j-{:08x}-fake", g.jobs.len() + 1);
    job["ID"] = json!(id);
    job["Tasks"] = json!([task]);
    if name.is_empty() {
        job["Name"] = json!(id);
    }
    if job["Namespace"].as_str().is_none_or(str::is_empty) {
        job["Namespace"] = json!("default");
    }
    if job["Count"].as_u64().is_none() {
        job["Count"] = json!(1);
    }
    let engine = &job["Tasks"][0]["Engine"]["Params"];
    let marker = format!(
        "{} {}",
        engine["Image"].as_str().unwrap_or(""),
        engine["Entrypoint"].as_str().unwrap_or("")
    );
    let behaviour = if marker.contains("fail") {
        Behaviour::Fail
    } else if marker.contains("hang") {
        Behaviour::Hang
    } else {
        Behaviour::Complete
    };
    g.jobs.push(Job {
        id: id.clone(),
        spec: job,
        created: Instant::now(),
        created_ns: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        behaviour,
        stopped: None,
    });
    axum::Json(json!({ "JobID": id, "EvaluationID": format!("eval-{id}"), "Warnings": [] }))
        .into_response()
}

fn job_json(job: &Job, step: Duration) -> Value {
    let mut out = job.spec.clone();
    let state = job.state(step);
    let message = match (state, &job.stopped) {
        ("Failed", _) => "execution failed on node-0: exit code 1".to_owned(),
        ("Stopped", Some((_, why))) => format!("job stopped: {why}"),
        _ => String::new(),
    };
    out["State"] = json!({ "StateType": state, "Message": message });
    if state == "Failed" {
        out["State"]["Details"] = json!({ "Hint": "check the image's entrypoint and arguments", "ErrorCode": "ExecutionFailed" });
    }
    out["Version"] = json!(1);
    out["Revision"] = json!(1);
    out["CreateTime"] = json!(1_700_000_000_000_000_000_i64);
    out["ModifyTime"] = json!(1_700_000_000_000_000_000_i64);
    out
}

/// Execution state as an integer, as on the wire: Running 6, Completed 9, Failed 10, Cancelled 11.
fn executions(job: &Job, step: Duration) -> Vec<Value> {
    let state = job.state(step);
    let compute = match state {
        "Pending" | "Queued" => return Vec::new(),
        "Running" => 6,
        "Completed" => 9,
        "Failed" => 10,
        _ => 11,
    };
    // Created when the job began running, last modified when it ended (or now, while it runs).
    let timeline = job.timeline(step);
    let began = timeline
        .iter()
        .find(|(s, _)| *s == "Running")
        .map(|(_, at)| *at);
    let ended = timeline
        .last()
        .filter(|(s, _)| matches!(*s, "Completed" | "Failed" | "Stopped"))
        .map(|(_, at)| *at);
    let at = |d: Duration| job.created_ns + i64::try_from(d.as_nanos()).unwrap_or(0);
    let created = began.or(ended).unwrap_or_default();
    let modified = ended.unwrap_or_else(|| job.created.elapsed());
    let mut e = json!({
        "ID": format!("e-{}", job.id),
        "JobID": job.id,
        "Namespace": "default",
        "NodeID": "node-0",
        "ComputeState": { "StateType": compute, "Message": "" },
        "DesiredState": { "StateType": if compute == 6 { 1 } else { 2 }, "Message": "" },
        "CreateTime": at(created),
        "ModifyTime": at(modified.max(created)),
    });
    let image = job.spec["Tasks"][0]["Engine"]["Params"]["Image"]
        .as_str()
        .unwrap_or("wasm");
    match compute {
        9 => {
            e["RunOutput"] = json!({ "ExitCode": 0, "Stdout": format!("hello from {image}\n"), "StdoutTruncated": false, "stderr": "", "StderrTruncated": false, "ErrorMsg": "" });
            let publisher = job.spec["Tasks"][0]["Publisher"]["Type"]
                .as_str()
                .unwrap_or("");
            if !publisher.is_empty() {
                let cid = ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, job.id.as_bytes());
                e["PublishedResult"] =
                    json!({ "Type": publisher, "Params": { "CID": cid.to_string() } });
            }
        }
        10 => {
            e["RunOutput"] = json!({ "ExitCode": 1, "Stdout": "", "StdoutTruncated": false, "stderr": "boom\n", "StderrTruncated": false, "ErrorMsg": "exit code 1" });
        }
        _ => {}
    }
    vec![e]
}

fn history(job: &Job, step: Duration) -> Vec<Value> {
    let mut items = Vec::new();
    let mut previous = "Undefined";
    for (seq, (state, _)) in job.timeline(step).into_iter().enumerate() {
        items.push(json!({
            "Type": "JobLevel",
            "JobID": job.id,
            "JobVersion": 1,
            "SeqNum": seq + 1,
            "Time": "2025-01-01T00:00:00Z",
            "JobState": { "Previous": previous, "New": state },
            "Event": { "Message": format!("job {state}"), "Topic": "Jobs", "Timestamp": "2025-01-01T00:00:00Z" },
        }));
        previous = state;
    }
    items
}
