//! The Bacalhau backend: tasks forwarded to a Bacalhau compute network as jobs.
//!
//! - [`client`]: the HTTP client of Bacalhau's v1 orchestrator API.
//! - [`mapping`]: task arguments and settings → a `Job`, held to the route's caps; the commands'
//!   argument shapes are in `shapes.rs`.
//! - this file: [`BacalhauExecutor`], which submits a job, waits for it within the wait window, and
//!   answers either with the result or with a join effect, `/bacalhau/job/await`, naming the job;
//!   the gateway then watches the job ([`Executor::status`]: its history, paged with `NextToken`
//!   from where the last poll stopped, and the job itself when new events arrive) and stores the
//!   final receipt.
//!
//! A job's `Name` is derived from the task id, so a submit whose answer was lost is found by name
//! instead of being submitted twice.

pub mod client;
pub(crate) mod local;
pub mod mapping;
mod settings;
mod shapes;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipld_core::ipld::Ipld;
use serde_json::Value;

pub use client::{Auth, BacalhauError, BacalhauErrorData, BacalhauErrorKind, Client, ClientConfig};
pub use mapping::{Caps, Defaults, MappingError};
pub use settings::{
    BACKEND, BacalhauBackend, BackendAuth, DEFAULT_BACALHAU_WAIT, DEFAULT_PUBLISHER,
    QUICK_MEMORY_BYTES, QUICK_TIMEOUT, quick,
};

use super::journal::{AwaitedJob, JobRecord};
use super::{ExecError, ExecErrorKind, Executed, Executor, JobStatus, Jobs, Journal, Limits};
use crate::receipt::{Effect, Effects, Out};
use crate::task::Task;
use crate::ucan::Command;

/// The commands a Bacalhau backend serves.
pub const COMMANDS: [&str; 3] = [mapping::DOCKER_RUN, mapping::WASM_RUN, mapping::JOB_RUN];

/// The command of the join effect that awaits a job.
pub const AWAIT_COMMAND: &str = "/bacalhau/job/await";

/// The job states Bacalhau reports that end a job.
const TERMINAL: [&str; 3] = ["Completed", "Failed", "Stopped"];

/// One Bacalhau network, as the gateway uses it.
#[derive(Debug, Clone)]
pub struct BacalhauSettings {
    /// The backend's name in the operator policy.
    pub name: String,
    /// The client settings (URL, auth, timeouts, retries).
    pub client: ClientConfig,
    /// How long `POST /` waits for a job before answering with a join effect.
    pub wait: Duration,
    /// How often a job is polled while the request waits.
    pub poll: Duration,
    /// Resources and publisher for tasks that ask for none.
    pub defaults: Defaults,
}

/// The executor for one Bacalhau network.
pub struct BacalhauExecutor {
    settings: BacalhauSettings,
    client: Client,
    /// Where each watched job's history was read up to.
    cursors: std::sync::Mutex<HashMap<String, Cursor>>,
    /// Who issues the await effects: the gateway.
    gateway_did: String,
    /// Where a submitted job is recorded at once (see [`crate::exec::journal`]).
    journal: Arc<dyn Journal>,
}

impl BacalhauExecutor {
    /// An executor for the network in `settings`; effects are issued by `gateway_did`, and
    /// submitted jobs are recorded in `journal`.
    pub fn new(
        settings: BacalhauSettings,
        gateway_did: String,
        journal: Arc<dyn Journal>,
    ) -> Result<Self, BacalhauError> {
        let client = Client::new(settings.client.clone())?;
        Ok(BacalhauExecutor {
            settings,
            client,
            cursors: std::sync::Mutex::new(HashMap::new()),
            gateway_did,
            journal,
        })
    }

    fn remember(&self, job: &str, cursor: Cursor) {
        if let Ok(mut c) = self.cursors.lock() {
            c.insert(job.to_owned(), cursor);
        }
    }

    /// The client, for health checks.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The job id for the job named `name`, submitting `job` only if Bacalhau does not know it.
    async fn find_or_submit(&self, name: &str, job: &Value) -> Result<String, BacalhauError> {
        if let Some(found) = self.client.job(name, false).await? {
            return job_id(&found);
        }
        let mut backoff = self.settings.client.backoff;
        let mut tries = 1;
        loop {
            match self.client.submit_once(job).await {
                Ok(submitted) => return Ok(submitted.job_id),
                Err(e)
                    if (e.is_transient() || e.outcome_unknown())
                        && tries < self.settings.client.attempts =>
                {
                    let Some(pause) = e.pause(backoff) else {
                        return Err(e);
                    };
                    tracing::debug!(error = %e, tries, name, "submit failed; looking the job up by name");
                    tokio::time::sleep(pause).await;
                    backoff = backoff.saturating_mul(2);
                    tries += 1;
                    // The submit may have reached Bacalhau: only resubmit if the name is unknown.
                    if let Some(found) = self.client.job(name, false).await? {
                        return job_id(&found);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The outcome of a job in a terminal `state`.
    async fn outcome(&self, id: &str, job: &Value) -> Result<Executed, BacalhauError> {
        let state = state_name(job);
        let all = self.client.executions(id).await?;
        let run_time = run_time(&all);
        let executions: Vec<Ipld> = all
            .iter()
            .filter(|e| matches!(e["ComputeState"]["StateType"].as_u64(), Some(9 | 10)))
            .map(execution)
            .collect();
        if state == "Completed" {
            let out = map([
                ("job", Ipld::String(id.to_owned())),
                ("state", Ipld::String(state)),
                ("executions", Ipld::List(executions)),
            ]);
            return Ok(Executed {
                run_time,
                ..done(Out::Ok(out))
            });
        }
        let message = job["Job"]["State"]["Message"]
            .as_str()
            .filter(|m| !m.is_empty())
            .map_or_else(|| format!("job {id} ended {state}"), str::to_owned);
        let mut details = BTreeMap::from([
            ("job".to_owned(), Ipld::String(id.to_owned())),
            ("state".to_owned(), Ipld::String(state.clone())),
            ("executions".to_owned(), Ipld::List(executions)),
        ]);
        if let Some(Value::Object(d)) = job["Job"]["State"].get("Details") {
            for (from, to) in [("Hint", "hint"), ("ErrorCode", "code"), ("Code", "code")] {
                if let Some(v) = d.get(from).and_then(Value::as_str) {
                    details.insert(to.to_owned(), Ipld::String(v.to_owned()));
                }
            }
        }
        let name = if state == "Stopped" {
            "JobStopped"
        } else {
            "JobFailed"
        };
        Ok(Executed {
            run_time,
            ..done(Out::error_with(name, message, details))
        })
    }

    /// The answer while the job runs on: its state, and the effect that awaits it.
    fn pending(&self, task: &Task, id: &str, state: String, deadline: i64) -> Executed {
        let args = AwaitedJob {
            backend: self.settings.name.clone(),
            job: id.to_owned(),
            deadline,
        }
        .to_args();
        let join = Command::parse(AWAIT_COMMAND).map(|cmd| Effect {
            cmd,
            sub: self.gateway_did.clone(),
            args,
            // One await per task: the task id makes the effect's own task id unique and stable.
            nonce: task.id.to_bytes(),
            iss: None,
            aud: None,
            meta: None,
            prf: None,
            exp: None,
        });
        Executed {
            effects: Effects {
                fork: Vec::new(),
                join: join.ok(),
            },
            ..done(Out::Ok(map([
                ("job", Ipld::String(id.to_owned())),
                ("state", Ipld::String(state)),
            ])))
        }
    }
}

/// How far a job's history has been read: the token of the page holding the last event seen (pages
/// before it are not read again), that event's sequence number, and the state last read.
#[derive(Debug, Clone, Default)]
struct Cursor {
    token: Option<String>,
    seen: i64,
    state: Option<String>,
}

/// The most history pages read in one poll.
const MAX_PAGES: usize = 100;

impl BacalhauExecutor {
    /// Reads the job's history from where the last poll stopped, following `NextToken`; whether
    /// any event is new. `Ok(None)` when Bacalhau does not know the job.
    async fn new_events(
        &self,
        job: &str,
        cursor: &mut Cursor,
    ) -> Result<Option<bool>, BacalhauError> {
        let mut token = cursor.token.clone();
        let mut fresh = false;
        for _ in 0..MAX_PAGES {
            let page = match self.client.history(job, token.as_deref()).await {
                Ok(page) => page,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            for item in &page.items {
                let seq = item["SeqNum"].as_i64().unwrap_or(i64::MAX);
                if seq > cursor.seen {
                    cursor.seen = seq;
                    fresh = true;
                }
            }
            match page.next_token {
                Some(next) => token = Some(next),
                None => {
                    // The last page: read it again next time, skipping events already seen.
                    cursor.token = token;
                    return Ok(Some(fresh));
                }
            }
        }
        cursor.token = token;
        Ok(Some(fresh))
    }
}

fn done(out: Out) -> Executed {
    Executed::finished(out)
}

/// How long a job's executions ran, as Bacalhau reports them: for each that ended (completed,
/// failed or cancelled), the time from its `CreateTime` (scheduled on its node) to its
/// `ModifyTime` (its last change, which ended it), in nanoseconds since the epoch. `None` when no
/// execution that ended carries both.
fn run_time(executions: &[Value]) -> Option<Duration> {
    let mut total: Option<u64> = None;
    for e in executions {
        if !matches!(e["ComputeState"]["StateType"].as_u64(), Some(9..=11)) {
            continue;
        }
        let (Some(created), Some(modified)) = (e["CreateTime"].as_i64(), e["ModifyTime"].as_i64())
        else {
            continue;
        };
        let ran = u64::try_from(modified.saturating_sub(created)).unwrap_or(0);
        total = Some(total.unwrap_or(0).saturating_add(ran));
    }
    total.map(Duration::from_nanos)
}

fn map<const N: usize>(entries: [(&str, Ipld); N]) -> Ipld {
    Ipld::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn job_id(found: &Value) -> Result<String, BacalhauError> {
    found["Job"]["ID"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| decode_error("a job without an ID"))
}

fn decode_error(message: &str) -> BacalhauError {
    BacalhauError::new(BacalhauErrorKind::Decode, message)
}

/// The job's state name. Bacalhau sends `StateType` as a string on the wire; the OpenAPI document
/// says integer, so both are read.
pub fn state_name(job: &Value) -> String {
    const NAMES: [&str; 7] = [
        "Undefined",
        "Pending",
        "Queued",
        "Running",
        "Completed",
        "Failed",
        "Stopped",
    ];
    match &job["Job"]["State"]["StateType"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| NAMES.get(usize::try_from(i).ok()?))
            .map_or_else(|| "Undefined".to_owned(), |s| (*s).to_owned()),
        _ => "Undefined".to_owned(),
    }
}

/// One execution for the receipt: node, exit code, output and where results were published.
fn execution(e: &Value) -> Ipld {
    let run = &e["RunOutput"];
    let text = |v: &Value| Ipld::String(v.as_str().unwrap_or_default().to_owned());
    let mut out = BTreeMap::from([
        ("node".to_owned(), text(&e["NodeID"])),
        (
            "exit_code".to_owned(),
            Ipld::Integer(run["ExitCode"].as_i64().unwrap_or(-1).into()),
        ),
        ("stdout".to_owned(), text(&run["Stdout"])),
        (
            "stdout_truncated".to_owned(),
            Ipld::Bool(run["StdoutTruncated"].as_bool().unwrap_or(false)),
        ),
        ("stderr".to_owned(), text(&run["stderr"])),
    ]);
    if let Some(err) = run["ErrorMsg"].as_str().filter(|s| !s.is_empty()) {
        out.insert("error".to_owned(), Ipld::String(err.to_owned()));
    }
    let published = &e["PublishedResult"];
    if let Some(kind) = published["Type"].as_str().filter(|t| !t.is_empty()) {
        out.insert(
            "published".to_owned(),
            published_ipld(kind, &published["Params"]),
        );
    }
    Ipld::Map(out)
}

/// A published result: `{type, cid: <link>}` for IPFS, `{type, url}` for URLs, other params as
/// lowercase string fields (e.g. S3's `bucket`, `key`).
fn published_ipld(kind: &str, params: &Value) -> Ipld {
    let mut out = BTreeMap::from([("type".to_owned(), Ipld::String(kind.to_owned()))]);
    if let Value::Object(params) = params {
        for (k, v) in params {
            let key = k.to_ascii_lowercase();
            let value = match (key.as_str(), v) {
                ("cid", Value::String(s)) => match cid::Cid::try_from(s.as_str()) {
                    Ok(cid) => Ipld::Link(cid),
                    Err(_) => Ipld::String(s.clone()),
                },
                (_, Value::String(s)) => Ipld::String(s.clone()),
                (_, other) => Ipld::String(other.to_string()),
            };
            out.insert(key, value);
        }
    }
    Ipld::Map(out)
}

fn unavailable(e: &BacalhauError) -> Executed {
    done(Out::error_with(
        "BackendUnavailable",
        e.to_string(),
        error_details(e),
    ))
}

fn error_details(e: &BacalhauError) -> BTreeMap<String, Ipld> {
    let mut d = BTreeMap::new();
    for (k, v) in [
        ("code", &e.code),
        ("hint", &e.hint),
        ("request_id", &e.request_id),
    ] {
        if let Some(v) = v {
            d.insert(k.to_owned(), Ipld::String(v.clone()));
        }
    }
    if let Some(status) = e.status {
        d.insert("status".to_owned(), Ipld::Integer(status.into()));
    }
    d
}

#[async_trait]
impl Executor for BacalhauExecutor {
    async fn execute(&self, task: &Task, limits: &Limits) -> Result<Executed, ExecError> {
        let started = Instant::now();
        let caps = Caps {
            cpu_milli: limits.compute.cpu_milli,
            memory_bytes: limits.memory_bytes,
            disk_bytes: limits.compute.disk_bytes,
            gpu: limits.compute.gpu,
            timeout: limits.timeout,
        };
        let name = format!("ucan-{}", task.id);
        let request = mapping::JobRequest {
            command: task.operation.as_str(),
            args: &task.input,
            meta: &task.meta,
            ipvm_memory: task.config.memory_bytes,
            ipvm_timeout: task.config.timeout,
            name: &name,
            labels: BTreeMap::from([("ucan-task".to_owned(), task.id.to_string())]),
        };
        let (job, timeout) = match mapping::job(&request, &caps, &self.settings.defaults) {
            Ok(mapped) => mapped,
            Err(e) => return Ok(done(Out::error(e.name(), e.to_string()))),
        };
        let deadline = crate::ucan::validate::unix_now()
            .saturating_add(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2));

        let id = match self.find_or_submit(&name, &job).await {
            Ok(id) => id,
            Err(e)
                if e.kind == BacalhauErrorKind::Api
                    && !e.is_transient()
                    && e.status.is_some_and(|s| s < 500) =>
            {
                return Ok(done(Out::error_with(
                    "BackendRejected",
                    e.message.clone(),
                    error_details(&e),
                )));
            }
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "bacalhau submit failed");
                return Ok(unavailable(&e));
            }
        };

        // Never wait past the job's own timeout: the watcher settles it then.
        // Recorded before anything else can go wrong: if this request never stores its receipt, the
        // gateway's watcher finishes the job instead.
        let record = JobRecord {
            submitted: true,
            ran: task.invocation,
            task: task.id,
            deadline,
            since: crate::ucan::validate::unix_now(),
            note: task.journal_note.clone(),
        };
        if let Err(e) = self
            .journal
            .submitted(&self.settings.name, &id, &record)
            .await
        {
            tracing::warn!(task = %task.id, job = %id, error = %e, "recording a submitted job failed");
        }

        let window = task
            .wait
            .map_or(self.settings.wait, |w| w.min(self.settings.wait))
            .min(timeout);
        let mut state = "Pending".to_owned();
        loop {
            match self.client.job(&id, false).await {
                Ok(Some(found)) => {
                    state = state_name(&found);
                    if TERMINAL.contains(&state.as_str()) {
                        match self.outcome(&id, &found).await {
                            Ok(executed) => return Ok(executed),
                            // The job is over but its details did not arrive: the watcher will
                            // fetch them.
                            Err(e) => tracing::debug!(error = %e, "reading the outcome failed"),
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(job = %id, error = %e, "polling the job failed"),
            }
            let left = window.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Ok(self.pending(task, &id, state, deadline));
            }
            tokio::time::sleep(self.settings.poll.min(left)).await;
        }
    }

    fn jobs(&self) -> Option<&dyn Jobs> {
        Some(self)
    }
}

#[async_trait]
impl Jobs for BacalhauExecutor {
    fn await_command(&self) -> &'static str {
        AWAIT_COMMAND
    }

    async fn ready(&self, timeout: Duration) -> Result<(), ExecError> {
        self.client
            .alive_once(timeout)
            .await
            .map_err(|e| ExecError::new(ExecErrorKind::Backend, e.to_string()))
    }

    fn wait(&self) -> Duration {
        self.settings.wait
    }

    /// Polls the job's history from where the last poll stopped (following `NextToken`); only when
    /// new events arrived (or on the first poll) is the job itself read for its state, so an idle
    /// job costs one small request per poll.
    async fn status(&self, job: &str) -> Result<JobStatus, ExecError> {
        let backend = |e: BacalhauError| ExecError::new(ExecErrorKind::Backend, e.to_string());
        let mut cursor = self
            .cursors
            .lock()
            .ok()
            .and_then(|c| c.get(job).cloned())
            .unwrap_or_default();
        let gone = || {
            JobStatus::Finished(Box::new(done(Out::error(
                "JobNotFound",
                format!("the Bacalhau network no longer knows job {job}"),
            ))))
        };
        let Some(fresh) = self.new_events(job, &mut cursor).await.map_err(backend)? else {
            return Ok(gone());
        };
        if let (false, Some(state)) = (fresh, &cursor.state) {
            let state = state.clone();
            self.remember(job, cursor);
            return Ok(JobStatus::Running { state });
        }
        let Some(found) = self.client.job(job, false).await.map_err(backend)? else {
            return Ok(gone());
        };
        let state = state_name(&found);
        if TERMINAL.contains(&state.as_str()) {
            let outcome = self.outcome(job, &found).await.map_err(backend)?;
            if let Ok(mut c) = self.cursors.lock() {
                c.remove(job);
            }
            return Ok(JobStatus::Finished(Box::new(outcome)));
        }
        cursor.state = Some(state.clone());
        self.remember(job, cursor);
        Ok(JobStatus::Running { state })
    }

    async fn stop(&self, job: &str, reason: &str) -> Result<(), ExecError> {
        self.client
            .stop(job, reason)
            .await
            .map_err(|e| ExecError::new(ExecErrorKind::Backend, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_adds_up_the_executions_that_ended() {
        let execution = |state: u64, created: i64, modified: i64| {
            serde_json::json!({
                "ComputeState": { "StateType": state },
                "CreateTime": created,
                "ModifyTime": modified,
            })
        };
        let executions = [
            execution(9, 1_000_000_000, 3_500_000_000),
            execution(10, 0, 1_000_000),
            // Still running, or never run: not counted.
            execution(6, 0, 9_000_000_000),
            execution(8, 0, 9_000_000_000),
            // A clock that went backwards counts nothing rather than wrapping.
            execution(11, 5, 1),
        ];
        assert_eq!(run_time(&executions), Some(Duration::from_millis(2501)));
        assert_eq!(
            run_time(&[serde_json::json!({"ComputeState": {"StateType": 9}})]),
            None
        );
        assert_eq!(run_time(&[]), None);
    }
}
