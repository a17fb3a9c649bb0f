//! From a task to a Bacalhau `Job`: the arguments of `/docker/run`, `/wasm32-wasi/run` and
//! `/bacalhau/job/run`, the resources asked for in `args.resources` and in the invocation's `meta`
//! (`ipvm/config`, `bacalhau/config`), all held to the route's caps.
//!
//! A caller may ask for less than the route allows, never more: a request above a cap is refused
//! ([`MappingError::OverLimit`]) rather than quietly lowered, so nobody believes a job ran with
//! resources it did not get. Resources nobody asked for get the backend's defaults, lowered to the
//! caps. Arguments come from a decoded token, whose nesting depth the decoder already bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use ipld_core::ipld::Ipld;
use serde_json::{Map, Value, json};

use super::shapes::{docker, passthrough, string, strings, wasm};

/// The invocation `meta` key with Bacalhau settings: `timeout` (seconds), `cpu` (millicores),
/// `memory`, `disk` (bytes), `gpu` (count), `publisher` (a publisher type such as `"ipfs"`),
/// `labels` (string map) and `constraints` (a list of `{key, operator, values}`).
pub const META_KEY: &str = "bacalhau/config";

/// The commands this backend serves.
pub const DOCKER_RUN: &str = "/docker/run";
/// Wasm modules on Bacalhau's Wasm engine.
pub const WASM_RUN: &str = "/wasm32-wasi/run";
/// A Bacalhau job spec passed through.
pub const JOB_RUN: &str = "/bacalhau/job/run";

/// The most a task on a route may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// CPU in millicores.
    pub cpu_milli: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
    /// GPUs.
    pub gpu: u64,
    /// Total run time, queueing included.
    pub timeout: Duration,
}

/// What a task gets when it asks for nothing (each lowered to the caps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// CPU in millicores (Bacalhau's own default is 500m).
    pub cpu_milli: u64,
    /// Memory in bytes (Bacalhau's own default is 512Mb).
    pub memory_bytes: u64,
    /// The publisher type for results, when outputs are asked for.
    pub publisher: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            cpu_milli: 500,
            memory_bytes: 512 * 1024 * 1024,
            publisher: "ipfs".to_owned(),
        }
    }
}

/// Why a task cannot become a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The arguments do not have the command's shape.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// The task asks for more than the route allows.
    #[error("over the route's limit: {0}")]
    OverLimit(String),
    /// The command is not one this backend serves.
    #[error("this backend does not serve {0}")]
    UnknownCommand(String),
}

impl MappingError {
    /// The name used in receipts.
    pub fn name(&self) -> &'static str {
        match self {
            MappingError::InvalidArgs(_) => "InvalidArgs",
            MappingError::OverLimit(_) => "OverLimit",
            MappingError::UnknownCommand(_) => "UnknownCommand",
        }
    }
}

pub(super) fn bad(message: impl Into<String>) -> MappingError {
    MappingError::InvalidArgs(message.into())
}

/// What the mapping needs to know about the task.
pub struct JobRequest<'a> {
    /// The command.
    pub command: &'a str,
    /// The arguments.
    pub args: &'a BTreeMap<String, Ipld>,
    /// The invocation's metadata.
    pub meta: &'a BTreeMap<String, Ipld>,
    /// Memory asked for in `ipvm/config` (bytes).
    pub ipvm_memory: Option<u64>,
    /// Timeout asked for in `ipvm/config`.
    pub ipvm_timeout: Option<Duration>,
    /// The job name (derived from the task id, so a retried submit is recognised).
    pub name: &'a str,
    /// Labels the gateway adds (the task id).
    pub labels: BTreeMap<String, String>,
}

/// The Bacalhau `Job` for a task, and the timeout it was given: the command's skeleton, then the
/// task's resources, timeouts and publisher, then the job's name, labels and constraints.
pub fn job(
    req: &JobRequest<'_>,
    caps: &Caps,
    defaults: &Defaults,
) -> Result<(Value, Duration), MappingError> {
    let settings = Settings::read(req)?;
    let mut job = skeleton(req)?;
    let task = job["Tasks"][0]
        .as_object_mut()
        .ok_or_else(|| bad("no task"))?;
    // What was asked (args, meta, a passed-through spec), held to the caps.
    let want = settings
        .resources
        .or(Resources::from_spec(task.get("Resources"))?);
    set_resources(task, &want, caps, defaults)?;
    let timeout = set_timeouts(task, want.timeout, caps)?;
    set_publisher(task, settings.publisher.clone(), defaults);
    identify(&mut job, req, settings)?;
    Ok((job, timeout))
}

/// The job the command's arguments describe, before resources, timeouts and identity.
fn skeleton(req: &JobRequest<'_>) -> Result<Value, MappingError> {
    match req.command {
        DOCKER_RUN => docker(req.args),
        WASM_RUN => wasm(req.args),
        JOB_RUN => passthrough(req.args),
        other => Err(MappingError::UnknownCommand(other.to_owned())),
    }
}

/// The task's `Resources`: each as asked within its cap, else the default lowered to the cap.
fn set_resources(
    task: &mut Map<String, Value>,
    want: &Resources,
    caps: &Caps,
    defaults: &Defaults,
) -> Result<(), MappingError> {
    let cpu = capped(
        "cpu (millicores)",
        want.cpu_milli,
        defaults.cpu_milli,
        caps.cpu_milli,
    )?;
    let memory = capped(
        "memory (bytes)",
        want.memory,
        defaults.memory_bytes,
        caps.memory_bytes,
    )?;
    let gpu = capped("gpu", want.gpu, 0, caps.gpu)?;
    let mut resources = Map::new();
    resources.insert("CPU".into(), json!(format!("{cpu}m")));
    resources.insert("Memory".into(), json!(memory.to_string()));
    if gpu > 0 {
        resources.insert("GPU".into(), json!(gpu.to_string()));
    }
    if let Some(disk) = want.disk {
        let disk = capped("disk (bytes)", Some(disk), 0, caps.disk_bytes)?;
        resources.insert("Disk".into(), json!(disk.to_string()));
    }
    task.insert("Resources".into(), Value::Object(resources));
    Ok(())
}

/// The task's `Timeouts` from the timeout asked for and a passed-through spec's own, held to the
/// route's; gives the total timeout.
fn set_timeouts(
    task: &mut Map<String, Value>,
    asked: Option<Duration>,
    caps: &Caps,
) -> Result<Duration, MappingError> {
    let passed = SpecTimeouts::read(task.get("Timeouts"))?;
    let over = |what: &str, t: Duration| {
        MappingError::OverLimit(format!(
            "{what} {}s is above the route's {}s",
            t.as_secs(),
            caps.timeout.as_secs()
        ))
    };
    let timeout = match asked.or(passed.total) {
        Some(t) if t > caps.timeout => return Err(over("timeout", t)),
        Some(t) => t,
        None => caps.timeout,
    };
    if let Some(t) = passed.execution.filter(|t| *t > caps.timeout) {
        return Err(over("job ExecutionTimeout", t));
    }
    let secs = timeout.as_secs().max(1);
    // Both requests are the caller's: the stricter holds (see `Resources::tighter`).
    let execution = passed.execution.map_or(secs, |t| t.as_secs().min(secs));
    let mut timeouts = json!({ "ExecutionTimeout": execution, "TotalTimeout": secs });
    if let Some(queue) = passed.queue {
        timeouts["QueueTimeout"] = json!(queue.as_secs());
    }
    task.insert("Timeouts".into(), timeouts);
    Ok(timeout)
}

/// The task's `Publisher`: the one asked for, else the default when the task has outputs and no
/// publisher of its own.
fn set_publisher(task: &mut Map<String, Value>, asked: Option<String>, defaults: &Defaults) {
    let has_outputs = task
        .get("ResultPaths")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let publisher = asked.or_else(|| {
        let set = task
            .get("Publisher")
            .and_then(|p| p.get("Type"))
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty());
        (has_outputs && !set).then(|| defaults.publisher.clone())
    });
    if let Some(publisher) = publisher {
        task.insert(
            "Publisher".into(),
            json!({ "Type": publisher, "Params": {} }),
        );
    }
}

/// The job's `Name`, its `Labels` (the spec's, the caller's, then the gateway's) and `Constraints`.
fn identify(job: &mut Value, req: &JobRequest<'_>, settings: Settings) -> Result<(), MappingError> {
    let job_map = job.as_object_mut().ok_or_else(|| bad("job is not a map"))?;
    job_map.insert("Name".into(), json!(req.name));
    let mut labels: Map<String, Value> = job_map
        .get("Labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (k, v) in settings.labels.into_iter().chain(req.labels.clone()) {
        labels.insert(k, json!(v));
    }
    job_map.insert("Labels".into(), Value::Object(labels));
    if !settings.constraints.is_empty() {
        job_map.insert("Constraints".into(), Value::Array(settings.constraints));
    }
    Ok(())
}

/// `Some(asked)` if within the cap (an error above it), else the default lowered to the cap.
fn capped(what: &str, asked: Option<u64>, default: u64, cap: u64) -> Result<u64, MappingError> {
    match asked {
        Some(n) if n > cap => Err(MappingError::OverLimit(format!(
            "{what}: asked for {n}, the route allows at most {cap}"
        ))),
        Some(n) => Ok(n),
        None => Ok(default.min(cap)),
    }
}

/// Resources asked for; `None` where nothing was asked.
#[derive(Debug, Clone, Copy, Default)]
struct Resources {
    cpu_milli: Option<u64>,
    memory: Option<u64>,
    disk: Option<u64>,
    gpu: Option<u64>,
    timeout: Option<Duration>,
}

impl Resources {
    /// Field-wise: the first that asked wins.
    fn or(self, other: Resources) -> Resources {
        Resources {
            cpu_milli: self.cpu_milli.or(other.cpu_milli),
            memory: self.memory.or(other.memory),
            disk: self.disk.or(other.disk),
            gpu: self.gpu.or(other.gpu),
            timeout: self.timeout.or(other.timeout),
        }
    }

    /// Field-wise lower of two requests (both sources are the caller's; the stricter holds).
    fn tighter(self, other: Resources) -> Resources {
        fn low<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Resources {
            cpu_milli: low(self.cpu_milli, other.cpu_milli),
            memory: low(self.memory, other.memory),
            disk: low(self.disk, other.disk),
            gpu: low(self.gpu, other.gpu),
            timeout: low(self.timeout, other.timeout),
        }
    }

    /// From a map `{cpu, memory, disk, gpu, timeout}` of integers (`cpu` in millicores, `timeout`
    /// in seconds). Unknown keys are refused: an ignored setting would run under terms nobody asked.
    fn from_ipld(
        value: &Ipld,
        what: &str,
    ) -> Result<(Resources, BTreeMap<String, Ipld>), MappingError> {
        let Ipld::Map(map) = value else {
            return Err(bad(format!("`{what}` must be a map")));
        };
        let mut r = Resources::default();
        let mut rest = BTreeMap::new();
        for (key, v) in map {
            let n = || match v {
                Ipld::Integer(n) => u64::try_from(*n)
                    .map_err(|_| bad(format!("`{what}.{key}` must not be negative"))),
                other => Err(bad(format!(
                    "`{what}.{key}` must be an integer, not {}",
                    crate::ipld::kind(other)
                ))),
            };
            // Bacalhau reads a zero CPU, memory, disk or timeout as "unset" and substitutes its own
            // default, so a zero request would run under terms nobody asked for.
            let positive = || match n()? {
                0 => Err(bad(format!("`{what}.{key}` must be at least 1"))),
                n => Ok(n),
            };
            match key.as_str() {
                "cpu" => r.cpu_milli = Some(positive()?),
                "memory" => r.memory = Some(positive()?),
                "disk" => r.disk = Some(positive()?),
                "gpu" => r.gpu = Some(n()?),
                "timeout" => r.timeout = Some(Duration::from_secs(positive()?)),
                _ => {
                    rest.insert(key.clone(), v.clone());
                }
            }
        }
        Ok((r, rest))
    }

    /// From a passed-through spec's `Resources` (`CPU` like `"500m"` or `"2"`, sizes in bytes or
    /// with a unit).
    fn from_spec(value: Option<&Value>) -> Result<Resources, MappingError> {
        let map = match value {
            None => return Ok(Resources::default()),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(bad(format!(
                    "job task Resources must be a map, not {other}"
                )));
            }
        };
        // Bacalhau's resource fields are strings ("500m", "1Gb"); a number there would be ignored
        // by a lenient reading and the job would run with defaults instead.
        let text = |k: &str| match map.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str()).filter(|s| !s.is_empty())),
            Some(other) => Err(bad(format!(
                "job task Resources.{k} must be a string such as \"500m\" or \"1Gb\", not {other}"
            ))),
        };
        Ok(Resources {
            cpu_milli: text("CPU")?.map(parse_cpu).transpose()?,
            memory: text("Memory")?.map(parse_bytes).transpose()?,
            disk: text("Disk")?.map(parse_bytes).transpose()?,
            gpu: text("GPU")?
                .map(|g| g.parse::<u64>().map_err(|_| bad(format!("GPU {g:?}"))))
                .transpose()?,
            timeout: None,
        })
    }
}

/// `"500m"` → 500, `"2"` → 2000, `"0.5"` → 500. Exact: a quantity that is not a whole number of
/// millicores (`"0.0005"`, `"1.5m"`) is refused rather than rounded.
pub fn parse_cpu(text: &str) -> Result<u64, MappingError> {
    let err = || {
        bad(format!(
            "CPU {text:?} is not a whole number of millicores such as \"500m\", \"2\" or \"0.25\""
        ))
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(m) = text.strip_suffix('m') {
        return if digits(m) {
            m.parse().map_err(|_| err())
        } else {
            Err(err())
        };
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    // ".5" and "5." are quantities too, "." is not.
    let (whole, fraction) = match (whole, fraction) {
        ("", "") => return Err(err()),
        ("", f) => ("0", f),
        (w, "") => (w, "0"),
        other => other,
    };
    if !digits(whole) || !digits(fraction) {
        return Err(err());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > 3 {
        return Err(err());
    }
    // Fractional digits are thousandths once padded to three: "25" → 250.
    let milli: u64 = format!("{fraction:0<3}").parse().map_err(|_| err())?;
    whole
        .parse::<u64>()
        .ok()
        .and_then(|w| w.checked_mul(1000))
        .and_then(|w| w.checked_add(milli))
        .ok_or_else(err)
}

/// Sizes as Bacalhau writes them (`"512Mb"`, `"1GiB"`, `"2048"`), case-insensitive; decimal units
/// are powers of 1000 and `i` units powers of 1024, as in go-humanize.
pub fn parse_bytes(text: &str) -> Result<u64, MappingError> {
    let err = || bad(format!("size {text:?} is not a size such as \"512Mb\""));
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| err())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(err)
}

/// The `Timeouts` of a passed-through spec's task, in seconds; a zero is Bacalhau's "no timeout"
/// and counts as not asked.
#[derive(Debug, Default)]
struct SpecTimeouts {
    total: Option<Duration>,
    execution: Option<Duration>,
    queue: Option<Duration>,
}

impl SpecTimeouts {
    fn read(value: Option<&Value>) -> Result<SpecTimeouts, MappingError> {
        let map = match value {
            None => return Ok(SpecTimeouts::default()),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(bad(format!("job task Timeouts must be a map, not {other}")));
            }
        };
        let mut timeouts = SpecTimeouts::default();
        for (key, v) in map {
            // Whole seconds only: 1.5 or "60" would otherwise be dropped and the cap used instead.
            let secs = v.as_u64().ok_or_else(|| {
                bad(format!(
                    "job task Timeouts.{key} must be a whole number of seconds, not {v}"
                ))
            })?;
            let secs = Some(Duration::from_secs(secs)).filter(|d| !d.is_zero());
            match key.as_str() {
                "TotalTimeout" => timeouts.total = secs,
                "ExecutionTimeout" => timeouts.execution = secs,
                "QueueTimeout" => timeouts.queue = secs,
                _ => {
                    let shown: String = key.chars().take(64).collect();
                    return Err(bad(format!(
                        "job task Timeouts.{shown} is not a Bacalhau timeout (TotalTimeout, ExecutionTimeout, QueueTimeout)"
                    )));
                }
            }
        }
        Ok(timeouts)
    }
}

/// Settings from `args.resources`, `meta["bacalhau/config"]` and `meta["ipvm/config"]`.
struct Settings {
    resources: Resources,
    publisher: Option<String>,
    labels: BTreeMap<String, String>,
    constraints: Vec<Value>,
}

impl Settings {
    fn read(req: &JobRequest<'_>) -> Result<Settings, MappingError> {
        if let Some(t) = req.ipvm_timeout {
            // Bacalhau counts timeouts in whole seconds, and reads 0 as "none".
            if t.subsec_nanos() != 0 || t.is_zero() {
                return Err(bad(format!(
                    "`ipvm/config.timeout` {} ms is not a whole number of seconds (at least 1), which Bacalhau's timeouts need",
                    t.as_millis()
                )));
            }
        }
        if req.ipvm_memory == Some(0) {
            return Err(bad("`ipvm/config.memory` must be at least 1"));
        }
        let mut resources = Resources {
            memory: req.ipvm_memory,
            timeout: req.ipvm_timeout,
            ..Resources::default()
        };
        if let Some(value) = req.args.get("resources") {
            let (r, rest) = Resources::from_ipld(value, "resources")?;
            if let Some(key) = rest.keys().next() {
                return Err(bad(format!(
                    "unknown key {key:?} in `resources` (expected cpu, memory, disk, gpu, timeout)"
                )));
            }
            resources = resources.tighter(r);
        }
        let mut settings = Settings {
            resources,
            publisher: None,
            labels: BTreeMap::new(),
            constraints: Vec::new(),
        };
        let Some(value) = req.meta.get(META_KEY) else {
            return Ok(settings);
        };
        let (r, rest) = Resources::from_ipld(value, META_KEY)?;
        settings.resources = settings.resources.tighter(r);
        for (key, v) in rest {
            match (key.as_str(), v) {
                ("publisher", Ipld::String(p)) => settings.publisher = Some(p),
                ("labels", Ipld::Map(m)) => {
                    for (k, v) in m {
                        let Ipld::String(v) = v else {
                            return Err(bad(format!("label {k:?} must be a string")));
                        };
                        settings.labels.insert(k, v);
                    }
                }
                ("constraints", Ipld::List(items)) => {
                    for item in &items {
                        settings.constraints.push(constraint(item)?);
                    }
                }
                (key, _) => {
                    let shown: String = key.chars().take(64).collect();
                    return Err(bad(format!(
                        "unknown key or wrong type {shown:?} in `{META_KEY}` (expected timeout, cpu, memory, disk, gpu, publisher, labels, constraints)"
                    )));
                }
            }
        }
        Ok(settings)
    }
}

const OPERATORS: &[&str] = &["!", "=", "==", "in", "!=", "notin", "exists", "gt", "lt"];

fn constraint(item: &Ipld) -> Result<Value, MappingError> {
    let Ipld::Map(m) = item else {
        return Err(bad("a constraint must be a map {key, operator, values}"));
    };
    let key = string(m.get("key"), "constraint key")?;
    let op = string(m.get("operator"), "constraint operator")?;
    if !OPERATORS.contains(&op.as_str()) {
        return Err(bad(format!(
            "constraint operator {op:?} (expected one of {})",
            OPERATORS.join(" ")
        )));
    }
    let values = match m.get("values") {
        None => Vec::new(),
        Some(v) => strings(v, "constraint values")?,
    };
    Ok(json!({ "Key": key, "Operator": op, "Values": values }))
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
