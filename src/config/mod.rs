//! The operator's policy: whose authority the gateway honours, which commands it serves, on which
//! backend, with which limits and admission rules. It lives in plain TOML files under `policies/`
//! (every key is documented in `policies/README.md`).
//!
//! Two layers, kept as separate types so nothing half-checked reaches the program:
//! - `policy_file` holds the *raw* form, what the operator wrote, deserialised with serde and carrying
//!   the byte span of every value;
//! - this module holds the *resolved* form, [`OperatorPolicy`], where every value has been checked
//!   and every default applied. Resolution is the only way to build one from a file, and any error
//!   points at the line and column of the offending value.
//!
//! Every built-in default lives here, flat, as a constant; `policies/default.toml` restates them so
//! operators can read them, and a test keeps the two in step.

mod compute;
mod policy_file;
mod rate;

pub use crate::exec::registry::BackendConfig;
pub use crate::exec::{Compute, Limits};
pub use compute::{DEFAULT_CPU_MILLI, DEFAULT_DISK_BYTES, DEFAULT_GPU};
pub use rate::{Budget, DEFAULT_MAX_TRACKED, Rate, RateLimits};

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::exec::registry::Offer;
use crate::task::EffectClass;
use crate::ucan::{Command, Policy};

/// Built-in default fuel per task (Wasm instructions, roughly), when no `[limits]` table sets it.
pub const DEFAULT_FUEL: u64 = 1_000_000_000;
/// Built-in default linear-memory cap per task: 64 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Built-in default wall-clock timeout per task.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Built-in default cap on a task's input: 1 MiB.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 1024 * 1024;
/// Built-in default cap on a task's output: 1 MiB.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Built-in default HTTP request body cap: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Built-in default for how deep a chain of effects the gateway runs itself may go.
pub const DEFAULT_EFFECT_DEPTH: usize = 4;
/// Built-in default for how many fork effects of one receipt the gateway runs itself.
pub const DEFAULT_EFFECT_FANOUT: usize = 8;

/// Built-in default for how long a request waits for a promised result not yet stored.
pub const DEFAULT_PROMISE_WAIT: Duration = Duration::from_secs(10);

/// The operator's policy, resolved: every value checked, every default applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorPolicy {
    /// Whose authority is honoured: an invocation's subject must be one of these.
    pub subjects: Vec<Subject>,
    /// Limits applied to every route, each overridable per route.
    pub defaults: Limits,
    /// The commands served, at most one route per command.
    pub routes: Vec<Route>,
    /// HTTP request body cap in bytes (default 4 MiB).
    pub max_body_bytes: usize,
    /// Backends the operator declared in sections of their own (a compute network per
    /// `[[bacalhau]]` table, say), each a backend name routes may use; the built-in ones (`wasm`,
    /// `wasi`, `blob`) need no declaration.
    pub backends: Vec<BackendConfig>,
    /// Bounds on effects the gateway runs itself.
    pub effects: EffectBounds,
    /// Budgets per invoker and per root issuer (`[rate_limits]`), enforced per replica.
    pub rate_limits: RateLimits,
}

/// How far the gateway follows effects it runs itself — an effect deeper than `max_depth` below the
/// request, or beyond the first `max_fanout` forks of one receipt, gets an error receipt instead —
/// and how long a promise waits for its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectBounds {
    /// The deepest effect run: 1 means the effects of the request's own receipt, but not theirs.
    pub max_depth: usize,
    /// The most fork effects of one receipt that are run.
    pub max_fanout: usize,
    /// How long a request waits for a promised result that is not stored yet.
    pub promise_wait: Duration,
}

impl Default for EffectBounds {
    fn default() -> Self {
        EffectBounds {
            max_depth: DEFAULT_EFFECT_DEPTH,
            max_fanout: DEFAULT_EFFECT_FANOUT,
            promise_wait: DEFAULT_PROMISE_WAIT,
        }
    }
}

/// A principal whose authority the gateway honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The gateway's own DID, whatever key it runs with (written `"self"`), so one file serves
    /// every deployment.
    Gateway,
    /// An explicit `did:key`, checked to parse and stored as written.
    Did(String),
}

/// How the gateway serves one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The exact command served, e.g. `/wasm/run`; a route never serves commands below it.
    pub command: Command,
    /// The backend's name: a built-in kind (see [`crate::exec::registry`]) or a declared one.
    pub backend: String,
    /// How tasks on this route may be scheduled (memoized, retried).
    pub effect: EffectClass,
    /// The route's limits: the policy defaults, overridden by the route's own `limits` table, and
    /// its `compute` table for tasks forwarded to a compute network.
    pub limits: Limits,
    /// Checked on the invocation's `args` on top of the delegation chain's own policies; empty
    /// when the route sets none.
    pub admission: Policy,
    /// Whether invocations with `exp: null` are accepted (default false), since they can only be
    /// protected against replay by remembering them.
    pub allow_no_expiry: bool,
    /// Whether the gateway runs the effects of this route's receipts itself (default false: they
    /// are returned for the client to submit).
    pub run_effects: bool,
    /// Whether a task may request effects of this command in the gateway's own name (subject =
    /// the gateway, no delegation needed). Default false: an effect must use authority the invoker
    /// delegated to the gateway.
    pub gateway_effects: bool,
}

impl Default for Limits {
    /// The built-in defaults (`DEFAULT_*`).
    fn default() -> Self {
        Self {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            compute: Compute::default(),
        }
    }
}

/// What went wrong in a policy file, by kind, so callers and tests need not read messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyFileErrorKind {
    /// The file could not be read.
    Io,
    /// Reported by the TOML reader: a syntax error, an unknown or missing key, a value of the
    /// wrong type.
    Toml,
    /// A subject that is neither `"self"` nor a parseable `did:key`, or a list with none.
    Subject,
    /// The same subject listed twice.
    DuplicateSubject,
    /// A malformed command, or one in the reserved `/ucan` namespace.
    Command,
    /// Two routes for the same command.
    DuplicateRoute,
    /// A backend no kind provides or declares, or a backend's own settings that are not allowed.
    Backend,
    /// An effect class that is not `pure`, `nondestructive` or `destructive`.
    Effect,
    /// An admission policy that does not parse.
    Admission,
    /// A size that is malformed, negative, zero or too large.
    Size,
    /// A duration that is malformed, zero or too large.
    Duration,
    /// A fuel amount of zero.
    Fuel,
    /// An `[effects]` bound out of range.
    Effects,
    /// A `[rate_limits]` value out of range, or a burst without a rate.
    RateLimit,
}

/// Why a policy file was rejected, with the position of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyFileError {
    /// Where the text came from, usually the file path.
    pub origin: String,
    /// 1-based line of the offending value; 0 when the error concerns the whole file (it could not
    /// be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 when `line` is 0.
    pub column: usize,
    /// What is wrong, in words.
    pub message: String,
    /// What is wrong, as a kind.
    pub kind: PolicyFileErrorKind,
}

impl PolicyFileError {
    /// `origin:line:column: message`, the form editors and compilers use, or `origin: message`
    /// when there is no position.
    fn render(&self) -> String {
        if self.line == 0 {
            format!("{}: {}", self.origin, self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.origin, self.line, self.column, self.message
            )
        }
    }
}

impl OperatorPolicy {
    /// Parses and resolves policy text; `origin` names it in errors (usually the file path).
    pub fn parse(text: &str, origin: &str) -> Result<Self, PolicyFileError> {
        policy_file::resolve(text, origin)
    }

    /// Reads and resolves a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyFileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyFileError {
            origin: origin.clone(),
            line: 0,
            column: 0,
            message: format!("cannot read policy file: {e}"),
            kind: PolicyFileErrorKind::Io,
        })?;
        Self::parse(&text, &origin)
    }

    /// The policy shipped with the gateway (`policies/default.toml`), built into the binary so the
    /// gateway runs without any file.
    pub fn embedded_default() -> Self {
        // The text is part of the build and a test parses it, so failure here is a build defect,
        // not an input error.
        Self::parse(EMBEDDED_DEFAULT, "policies/default.toml")
            .unwrap_or_else(|e| panic!("the embedded default policy must parse: {e}"))
    }

    /// Adds a backend, and routes for the commands it `offers` where no route serves them yet (what
    /// `serve --bacalhau URL` does), with the policy's default limits except the offer's timeout and
    /// memory. A backend of the same name is replaced.
    pub fn add_backend(&mut self, backend: BackendConfig, offers: &[Offer]) {
        for offer in offers {
            let Ok(command) = Command::parse(offer.command) else {
                continue;
            };
            if self.route(&command).is_none() {
                self.routes.push(Route {
                    command,
                    backend: backend.name.clone(),
                    effect: offer.effect,
                    limits: Limits {
                        timeout: offer.timeout,
                        memory_bytes: offer.memory_bytes,
                        ..self.defaults
                    },
                    admission: Policy::empty(),
                    allow_no_expiry: false,
                    run_effects: false,
                    gateway_effects: false,
                });
            }
        }
        self.backends.retain(|b| b.name != backend.name);
        self.backends.push(backend);
    }

    /// The route serving exactly `command`. Routes do not cover sub-commands: `/wasm` does not route
    /// `/wasm/run`, so adding a command never silently widens what an operator serves.
    pub fn route(&self, command: &Command) -> Option<&Route> {
        self.routes.iter().find(|r| &r.command == command)
    }

    /// Whether authority rooted in `subject` (an invocation's `sub`) is honoured, given the DID the
    /// gateway runs as (what `"self"` stands for).
    pub fn honours(&self, subject: &str, gateway_did: &str) -> bool {
        self.subjects.iter().any(|s| match s {
            Subject::Gateway => subject == gateway_did,
            Subject::Did(did) => subject == did,
        })
    }
}

/// The text of `policies/default.toml`, built in.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../policies/default.toml");

impl fmt::Display for Subject {
    /// As written in policy files: `self` or the DID.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Gateway => f.write_str("self"),
            Subject::Did(did) => f.write_str(did),
        }
    }
}
