//! Tasks: what an authorised invocation asks the gateway to do, in the IPVM task shape (resource,
//! operation, input, execution settings), with the identities used for memoization and receipts.

use std::collections::BTreeMap;
use std::time::Duration;

use cid::Cid;
use ipld_core::ipld::Ipld;
use serde::Deserialize;

use crate::ipld::{RAW, cid_for, dag_cbor_cid, rewrite_map, to_dag_cbor};
use crate::ucan::command::Command;
use crate::ucan::invocation::InvocationPayload;
use crate::ucan::validate::Authorized;

/// How a task may be scheduled, decided by the operator's route for its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectClass {
    /// Same input, same output, no side effects: may be memoized and retried.
    Pure,
    /// Side effects that are safe to repeat: may be retried, not memoized by default.
    Nondestructive,
    /// Side effects that must not be repeated: never retried, never run twice for one invocation.
    Destructive,
}

impl EffectClass {
    /// The lowercase name used in policy files and receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectClass::Pure => "pure",
            EffectClass::Nondestructive => "nondestructive",
            EffectClass::Destructive => "destructive",
        }
    }
}

/// The invocation `meta` key that holds requested execution settings.
///
/// Its value is a map, every field optional:
///
/// | key       | type | meaning                                   |
/// |-----------|------|-------------------------------------------|
/// | `fuel`    | int  | instruction budget (Wasm fuel units)      |
/// | `memory`  | int  | memory ceiling in bytes                   |
/// | `timeout` | int  | wall-clock limit in milliseconds          |
/// | `secret`  | bool | the output must not be shared or memoized |
///
/// Integers must be non-negative. Any other key, or a value of the wrong type, makes the task
/// invalid: a setting the gateway silently ignored (a typo, or a newer client's option) would run the
/// work under terms the invoker did not ask for.
pub const CONFIG_KEY: &str = "ipvm/config";

/// Execution settings as the invoker requested them (see [`CONFIG_KEY`]). These are requests, not
/// limits: the gateway resolves them against its own ceilings before running anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecConfig {
    /// Requested fuel (instruction budget).
    pub fuel: Option<u64>,
    /// Requested memory ceiling in bytes.
    pub memory_bytes: Option<u64>,
    /// Requested wall-clock limit.
    pub timeout: Option<Duration>,
    /// Whether the output is secret (not to be memoized or shown to others).
    pub secret: Option<bool>,
}

impl ExecConfig {
    /// Reads the settings from invocation metadata; absent metadata or an absent key gives the
    /// defaults (nothing requested).
    pub fn from_meta(meta: Option<&BTreeMap<String, Ipld>>) -> Result<Self, TaskError> {
        let Some(value) = meta.and_then(|m| m.get(CONFIG_KEY)) else {
            return Ok(ExecConfig::default());
        };
        let Ipld::Map(fields) = value else {
            return Err(invalid(format!("`{CONFIG_KEY}` must be a map")));
        };
        let mut config = ExecConfig::default();
        for (key, value) in fields {
            match key.as_str() {
                "fuel" => config.fuel = Some(non_negative(key, value)?),
                "memory" => config.memory_bytes = Some(non_negative(key, value)?),
                "timeout" => {
                    config.timeout = Some(Duration::from_millis(non_negative(key, value)?));
                }
                "secret" => match value {
                    Ipld::Bool(b) => config.secret = Some(*b),
                    _ => return Err(invalid(format!("`{CONFIG_KEY}.secret` must be a boolean"))),
                },
                _ => {
                    // The key is attacker-sized; quote only its start.
                    let shown: String = key.chars().take(64).collect();
                    return Err(invalid(format!(
                        "unknown key {shown:?} in `{CONFIG_KEY}` (expected fuel, memory, timeout, secret)"
                    )));
                }
            }
        }
        Ok(config)
    }
}

fn invalid(message: String) -> TaskError {
    TaskError::InvalidConfig(message)
}

fn non_negative(key: &str, value: &Ipld) -> Result<u64, TaskError> {
    match value {
        Ipld::Integer(n) => u64::try_from(*n).map_err(|_| {
            invalid(format!(
                "`{CONFIG_KEY}.{key}` must be a non-negative integer, not {n}"
            ))
        }),
        _ => Err(invalid(format!("`{CONFIG_KEY}.{key}` must be an integer"))),
    }
}

/// Why an authorised invocation cannot become a task.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The requested execution settings (`meta["ipvm/config"]`) are malformed.
    #[error("invalid execution settings: {0}")]
    InvalidConfig(String),
    /// The payload is not the one that was authorised (subject, command, invoker or arguments
    /// differ): a caller bug, refused so a task never runs under someone else's authority.
    #[error("the invocation does not match its authorisation: {0}")]
    Mismatch(String),
    /// The arguments cannot be encoded as DAG-CBOR (a non-finite float, an integer beyond 64 bits),
    /// so the task has no well-defined identity. Never the case for arguments decoded from a token.
    #[error("the arguments cannot be encoded: {0}")]
    Unencodable(String),
}

/// An authorised invocation, ready to schedule: the IPVM task shape plus the identities the gateway
/// keys on (task id for receipts, work id for memoization).
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The invocation spec's task id: CID of `{sub, cmd, args, nonce}`.
    pub id: Cid,
    /// What is computed, independent of who asks and why: see [`work_id`].
    pub work_id: Cid,
    /// The invocation's CID (what a receipt's `ran` names).
    pub invocation: Cid,
    /// Who asked (`iss`).
    pub invoker: String,
    /// The subject whose authority is exercised (`sub`).
    pub resource: String,
    /// The command (`cmd`).
    pub operation: Command,
    /// The arguments (`args`) as authorised: promises resolved, every policy in the chain passed.
    pub input: BTreeMap<String, Ipld>,
    /// The invocation nonce (empty for idempotent work).
    pub nonce: Vec<u8>,
    /// Requested execution settings.
    pub config: ExecConfig,
    /// How the task may be scheduled.
    pub effect: EffectClass,
    /// The earliest expiry of the invocation and its delegation chain: the task must not start after.
    pub expires: Option<i64>,
    /// The invocation's metadata, for backends that read keys of their own (e.g. `bacalhau/config`).
    pub meta: BTreeMap<String, Ipld>,
    /// How long the caller is prepared to wait for a result before taking a receipt that points at
    /// the pending work (HTTP `Prefer: wait=N`); `None` leaves it to the backend.
    pub wait: Option<Duration>,
    /// What the gateway asks to have written down with any job the task hands to an external
    /// backend ([`crate::exec::journal::JobRecord::note`]): the quotas the job counts against.
    /// Executors copy it into the job's record and never read it.
    pub journal_note: Option<Ipld>,
}

impl Task {
    /// The task for an invocation that `auth` says is authorised. `inv` must be the payload `auth`
    /// was computed from; a mismatch is refused rather than trusted.
    pub fn new(
        auth: &Authorized,
        inv: &InvocationPayload,
        effect: EffectClass,
    ) -> Result<Task, TaskError> {
        let mismatch = if auth.subject != inv.sub {
            Some("subject")
        } else if auth.command != inv.cmd {
            Some("command")
        } else if auth.invoker != inv.iss {
            Some("invoker")
        } else if auth.task != inv.task_id() {
            Some("arguments or nonce")
        } else {
            None
        };
        if let Some(field) = mismatch {
            return Err(TaskError::Mismatch(format!(
                "the {field} differs from the authorised one"
            )));
        }
        let config = ExecConfig::from_meta(inv.meta.as_ref())?;
        // Encoding the work map succeeds exactly when the arguments are encodable, which is also
        // what makes the task id (built from the same arguments) meaningful.
        let work_id = try_work_id(&inv.cmd, &auth.args).map_err(TaskError::Unencodable)?;
        Ok(Task {
            id: auth.task,
            work_id,
            invocation: auth.invocation,
            invoker: inv.iss.clone(),
            resource: inv.sub.clone(),
            operation: inv.cmd.clone(),
            input: auth.args.clone(),
            nonce: inv.nonce.clone(),
            config,
            effect,
            expires: auth.expires,
            meta: inv.meta.clone().unwrap_or_default(),
            wait: None,
            journal_note: None,
        })
    }
}

/// The memoization key: CID of the DAG-CBOR map `{cmd, args}`, where every byte string anywhere in
/// `args` is first replaced by a link to its raw CID.
///
/// Subject, invoker, nonce and metadata are left out, so the same work over the same data has one id
/// whoever asks. Replacing bytes by links makes inline data and a reference to the same data
/// equivalent, so a client may send a large module inline once and by CID afterwards.
///
/// Arguments decoded from a token always encode. For hand-built arguments that cannot (a non-finite
/// float), this returns the CID of an empty block; [`Task::new`] refuses such arguments instead.
pub fn work_id(cmd: &Command, args: &BTreeMap<String, Ipld>) -> Cid {
    try_work_id(cmd, args).unwrap_or_else(|_| dag_cbor_cid(&[]))
}

fn try_work_id(cmd: &Command, args: &BTreeMap<String, Ipld>) -> Result<Cid, String> {
    let mut work = BTreeMap::new();
    work.insert("cmd".to_owned(), Ipld::String(cmd.to_string()));
    work.insert("args".to_owned(), Ipld::Map(bytes_as_links(args)));
    Ok(dag_cbor_cid(&to_dag_cbor(&Ipld::Map(work))?))
}

/// A copy of `args` with every byte string replaced by a link to its raw CID. Byte strings are
/// hashed where they lie, never copied: inline modules can be large.
fn bytes_as_links(args: &BTreeMap<String, Ipld>) -> BTreeMap<String, Ipld> {
    rewrite_map(args, |node| match node {
        Ipld::Bytes(bytes) => Some(Ipld::Link(cid_for(RAW, bytes))),
        _ => None,
    })
}
