//! Executors: where an authorised task actually runs.
//!
//! This module owns the vocabulary every executor shares: an [`Outcome`] (what a task produced, or
//! how it failed) and an [`ExecError`] (the executor could not run the task at all). The split is
//! deliberate: a guest that traps, runs out of fuel or returns garbage has *failed*, and that failure
//! belongs in the receipt as `out.error`; only a broken host (an engine that cannot start, a caller
//! that broke the API contract) is an `ExecError`.
//!
//! - [`Executor`]: the small trait every backend implements (one file per backend, one line in
//!   `cli::serve` to register it under the backend name the operator policy routes to).
//! - [`wasm`]: the local Wasm engine for `/wasm/run` (core exports and a DAG-CBOR ABI) and
//!   `/wasi/run` (WASI preview-1 command modules).
//! - [`local`]: the `wasm`, `wasi` and `blob` backends built on it and on the store.
//! - [`schema`]: each command's argument shape as JSON Schema, published at `GET /`.
//! - [`bacalhau`]: tasks forwarded to a Bacalhau compute network, whose jobs may outlive a request;
//!   [`journal`]: what is written down about such jobs so none is lost.
//!
//! Nothing here knows HTTP, UCAN or storage: executors take bytes and IPLD values and give back IPLD.

pub mod bacalhau;
mod executor;
mod host;
pub mod journal;
pub mod local;
pub mod registry;
pub mod schema;
pub mod wasm;

pub use executor::{Executed, Executor, JobStatus, Jobs};
pub use host::{Blobs, Host, HostError, Journal};

use std::fmt;
use std::time::Duration;

use ipld_core::ipld::Ipld;

/// Resource limits for one task: the route's, lowered where the invoker asked for less. Every
/// executor reads the ones that apply to it (the Wasm engine fuel, memory, time and output; a
/// compute network memory, time and [`Compute`]). The built-in defaults live in [`crate::config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (instruction budget) for the run; roughly one unit per Wasm instruction executed.
    pub fuel: u64,
    /// Linear-memory (or container memory) cap in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline for the run.
    pub timeout: Duration,
    /// Cap on the task's input in bytes.
    pub max_input_bytes: usize,
    /// Cap on the task's output in bytes: the ABI's result bytes, or each of WASI's stdout and
    /// stderr.
    pub max_output_bytes: usize,
    /// What one task forwarded to a compute network may use beyond memory and time.
    pub compute: Compute,
}

impl Limits {
    /// The field-wise lower of two sets of limits, e.g. a route's limits and what an invocation
    /// asks for: a request may tighten limits, never loosen them.
    pub fn min(&self, other: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(other.fuel),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            timeout: self.timeout.min(other.timeout),
            max_input_bytes: self.max_input_bytes.min(other.max_input_bytes),
            max_output_bytes: self.max_output_bytes.min(other.max_output_bytes),
            compute: Compute {
                cpu_milli: self.compute.cpu_milli.min(other.compute.cpu_milli),
                gpu: self.compute.gpu.min(other.compute.gpu),
                disk_bytes: self.compute.disk_bytes.min(other.compute.disk_bytes),
            },
        }
    }
}

/// CPU, GPU and disk caps for one task run on a compute network (`[route.compute]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    /// CPU in millicores.
    pub cpu_milli: u64,
    /// GPUs.
    pub gpu: u64,
    /// Disk in bytes.
    pub disk_bytes: u64,
}

/// How a task that ran (or was attempted) ended. A failing task is an outcome, not an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The task finished and produced `value`.
    Ok {
        /// The task's result.
        value: Ipld,
        /// Fuel (Wasm instructions, roughly) the task consumed; goes into receipts and metrics.
        fuel_used: u64,
        /// How long the guest ran (instantiation and call).
        run_time: Duration,
    },
    /// The task failed; `name` is one of the [`Failure`] names.
    Err {
        /// A stable, wire-facing failure name, e.g. `"OutOfFuel"` (see [`Failure::name`]).
        name: &'static str,
        /// A human-readable explanation that reveals nothing about the host.
        message: String,
        /// Fuel consumed before the failure; a lower bound for failures that stop the guest in
        /// the middle of a function, such as a timeout (see `docs/wasm-abi.md`).
        fuel_used: u64,
        /// How long the guest ran before it failed; zero when it never started.
        run_time: Duration,
    },
}

impl Outcome {
    /// A failed outcome of kind `failure`, after the guest ran for `run_time`.
    pub fn failed(
        failure: Failure,
        message: impl Into<String>,
        fuel_used: u64,
        run_time: Duration,
    ) -> Self {
        Outcome::Err {
            name: failure.name(),
            message: message.into(),
            fuel_used,
            run_time,
        }
    }

    /// Fuel consumed, whether the task succeeded or not.
    pub fn fuel_used(&self) -> u64 {
        match self {
            Outcome::Ok { fuel_used, .. } | Outcome::Err { fuel_used, .. } => *fuel_used,
        }
    }

    /// How long the guest ran, whether the task succeeded or not.
    pub fn run_time(&self) -> Duration {
        match self {
            Outcome::Ok { run_time, .. } | Outcome::Err { run_time, .. } => *run_time,
        }
    }

    /// The result value, if the task succeeded.
    pub fn value(&self) -> Option<&Ipld> {
        match self {
            Outcome::Ok { value, .. } => Some(value),
            Outcome::Err { .. } => None,
        }
    }

    /// The failure name, if the task failed.
    pub fn error_name(&self) -> Option<&'static str> {
        match self {
            Outcome::Ok { .. } => None,
            Outcome::Err { name, .. } => Some(name),
        }
    }
}

/// Why a task failed. Each kind is a stable name that clients may match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The task used up its fuel budget.
    OutOfFuel,
    /// The task tried to grow memory (or a table) beyond its limit.
    MemoryLimit,
    /// The task ran past its wall-clock deadline.
    Timeout,
    /// The guest trapped, or broke the calling convention at run time (e.g. a pointer out of bounds).
    Trap,
    /// The arguments do not fit the function being called.
    InvalidArgs,
    /// The module has no such exported function.
    NoSuchExport,
    /// The bytes are not a valid module, or the module does not have the shape the run mode needs.
    InvalidModule,
    /// The guest produced more output than allowed.
    OutputTooLarge,
}

impl Failure {
    /// Every kind, for exhaustive tests and documentation.
    pub const ALL: [Failure; 8] = [
        Failure::OutOfFuel,
        Failure::MemoryLimit,
        Failure::Timeout,
        Failure::Trap,
        Failure::InvalidArgs,
        Failure::NoSuchExport,
        Failure::InvalidModule,
        Failure::OutputTooLarge,
    ];

    /// The name as it appears in receipts.
    pub fn name(self) -> &'static str {
        match self {
            Failure::OutOfFuel => "OutOfFuel",
            Failure::MemoryLimit => "MemoryLimit",
            Failure::Timeout => "Timeout",
            Failure::Trap => "Trap",
            Failure::InvalidArgs => "InvalidArgs",
            Failure::NoSuchExport => "NoSuchExport",
            Failure::InvalidModule => "InvalidModule",
            Failure::OutputTooLarge => "OutputTooLarge",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kept an executor from running a task at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecErrorKind {
    /// The engine could not be created or configured (a host problem, not the task's).
    Engine,
    /// The module bytes do not hash to the CID they were given with: the caller broke the contract.
    CidMismatch,
    /// The host failed while setting up or tearing down a run (not caused by the guest).
    Host,
    /// An external backend (e.g. a Bacalhau network) could not be reached or failed.
    Backend,
}

impl fmt::Display for ExecErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecErrorKind::Engine => "engine",
            ExecErrorKind::CidMismatch => "CID mismatch",
            ExecErrorKind::Host => "host",
            ExecErrorKind::Backend => "backend",
        })
    }
}

/// The executor could not run the task; unlike an [`Outcome::Err`], this is not the task's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} error: {message}")]
#[non_exhaustive]
pub struct ExecError {
    /// What kind of problem this is.
    pub kind: ExecErrorKind,
    /// Details for logs (may name host internals; do not send to clients as is).
    pub message: String,
}

impl ExecError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ExecErrorKind, message: impl Into<String>) -> Self {
        ExecError {
            kind,
            message: message.into(),
        }
    }
}
