//! `invoke --wait`: when a receipt's join effect awaits a job (`/bacalhau/job/await`), poll
//! `GET /receipts/{task}` for the effect's final receipt, showing the job's state on a progress line.

use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use ipld_core::ipld::Ipld;

use super::remote::{Polled, Remote};
use crate::exec::bacalhau::AWAIT_COMMAND;
use crate::receipt::{Effect, Out, Receipt};

/// How often the gateway is asked.
const POLL: Duration = Duration::from_millis(500);
/// How long past the job's deadline the CLI keeps waiting (the gateway stops the job then).
const GRACE: Duration = Duration::from_secs(60);

/// The join effect awaiting a job, if the receipt has one.
pub fn awaited(receipt: &Receipt) -> Option<&Effect> {
    receipt
        .body
        .fx
        .join
        .as_ref()
        .filter(|e| e.cmd.as_str() == AWAIT_COMMAND)
}

/// Waits for the receipt of `join`, showing the job's state; gives the final receipt or refusal.
pub async fn wait_for(
    remote: &Remote,
    did: &str,
    first: &Receipt,
    join: &Effect,
) -> anyhow::Result<Result<Receipt, serde_json::Value>> {
    let text = |v: Option<&Ipld>| match v {
        Some(Ipld::String(s)) => s.clone(),
        _ => "?".to_owned(),
    };
    let job = text(join.args.get("job"));
    let mut state = match &first.body.out {
        Out::Ok(Ipld::Map(m)) => text(m.get("state")),
        _ => "?".to_owned(),
    };
    let deadline = match join.args.get("deadline") {
        Some(Ipld::Integer(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
        _ => i64::MAX,
    };
    let task = join.task_id().to_string();
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(job.clone());
    bar.set_message(state.clone());
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let result = loop {
        match remote.poll_receipt(&task, did).await? {
            Polled::Receipt(receipt) => break Ok(*receipt),
            Polled::Refused(refusal) => break Err(refusal),
            Polled::Pending(pending) => {
                if let Some(s) = pending["state"].as_str()
                    && s != state
                {
                    state = s.to_owned();
                    bar.set_message(state.clone());
                }
            }
        }
        let now = crate::ucan::validate::unix_now();
        if now > deadline.saturating_add(GRACE.as_secs() as i64) {
            bar.finish_and_clear();
            bail!("job {job} passed its deadline and no final receipt arrived (task {task})");
        }
        tokio::time::sleep(POLL).await;
    };
    bar.finish_and_clear();
    eprintln!(
        "job {job} settled after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(result)
}
