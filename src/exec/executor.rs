//! The small traits every backend implements: [`Executor`] runs a task, and a backend whose jobs
//! outlive a request also offers [`Jobs`], so the gateway can watch them without knowing the backend.

use std::time::Duration;

use async_trait::async_trait;

use super::{ExecError, Limits};
use crate::receipt::{Effects, Out};
use crate::task::Task;

/// What running a task produced, ready for a receipt.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The task's result, or how it failed.
    pub out: Out,
    /// Wasm fuel consumed, where the backend measures it.
    pub fuel_used: Option<u64>,
    /// How long the task ran, where the backend measures it: a Wasm guest's call, or the
    /// executions of a finished job as the backend reports them.
    pub run_time: Option<Duration>,
    /// Further work the task asks for.
    pub effects: Effects,
}

impl Executed {
    /// An error outcome with nothing consumed and no effects.
    pub fn failed(name: &str, message: impl Into<String>) -> Self {
        Executed::finished(Out::error(name, message))
    }

    /// An outcome reached without running anything that is measured (arguments refused, a blob
    /// stored), with no effects.
    pub fn finished(out: Out) -> Self {
        Executed {
            out,
            fuel_used: None,
            run_time: None,
            effects: Effects::default(),
        }
    }
}

/// A backend that runs tasks.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `task` within `limits`. A task that fails is `Ok` with an error outcome; `Err` means the
    /// backend could not run it at all.
    async fn execute(&self, task: &Task, limits: &Limits) -> Result<Executed, ExecError>;

    /// For backends whose jobs can outlive a request (they answer `execute` with a join effect of
    /// their await command, see [`super::journal::AwaitedJob`]): how to follow those jobs. `None`
    /// for backends that finish every task inside `execute`.
    fn jobs(&self) -> Option<&dyn Jobs> {
        None
    }
}

/// How the gateway follows the jobs of a backend whose jobs outlive a request.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// The command of the join effect that awaits one of this backend's jobs.
    fn await_command(&self) -> &'static str;

    /// Where the job `job` stands now.
    async fn status(&self, job: &str) -> Result<JobStatus, ExecError>;

    /// Stops the job `job`, saying why.
    async fn stop(&self, job: &str, reason: &str) -> Result<(), ExecError>;

    /// Whether the backend answers now (one request, no retries, within `timeout`), for readiness
    /// probes.
    async fn ready(&self, timeout: std::time::Duration) -> Result<(), ExecError>;

    /// How long a request waits for one of its jobs before answering with the await effect.
    fn wait(&self) -> std::time::Duration;
}

/// Where a job on an external backend stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobStatus {
    /// Still going, in the backend's named state (e.g. `Queued`).
    Running {
        /// The backend's name for the state.
        state: String,
    },
    /// Over: the outcome for the final receipt.
    Finished(Box<Executed>),
}

impl From<super::Outcome> for Executed {
    fn from(outcome: super::Outcome) -> Self {
        match outcome {
            super::Outcome::Ok {
                value,
                fuel_used,
                run_time,
            } => Executed {
                out: Out::Ok(value),
                fuel_used: Some(fuel_used),
                run_time: Some(run_time),
                effects: Effects::default(),
            },
            super::Outcome::Err {
                name,
                message,
                fuel_used,
                run_time,
            } => Executed {
                out: Out::error(name, message),
                fuel_used: Some(fuel_used),
                run_time: Some(run_time),
                effects: Effects::default(),
            },
        }
    }
}
