//! Delegation quotas: a delegation may carry, in its signed `meta`, a quota on what its chain may
//! prove in a window — `"gateway/quota": {"invocations": 100, "fuel": 5000000, "per": "1h"}` —
//! and every invocation whose chain includes it counts against it. A quota limits any non-empty
//! subset of [`Resource`]s. Libraries that do not know the key ignore it, as the spec asks of
//! unknown `meta` keys; this gateway honours it.
//!
//! Windows are fixed: `per` seconds long, aligned to the Unix epoch. Counts are durable and shared
//! by every replica. Before anything runs, the counts are read, and a chain with any quota whose
//! limit of any resource is reached is refused without running the task.
//!
//! - **Invocations** are exact: each is charged in the commit that stores the invocation's receipt,
//!   and the store applies it only while the window has one left; two replicas racing for the last
//!   may both run the task, but only one receipt is stored and the other is refused. A destructive
//!   task is charged with its run-once intent instead, before it starts.
//! - **Fuel and run time** are known only once the task has run: what it consumed is added in the
//!   commit that stores its receipt, whatever the window holds already, so the run that crosses a
//!   limit finishes and the next one is refused. A Bacalhau job that outlives its request is
//!   charged by the commit of its final receipt, in the window it ends in.
//! - **Jobs** are counted when one is handed to an external backend: in the commit that records
//!   the submitted job, or for a destructive task in its intent.
//!
//! A refusal (of any kind) stores nothing, so it uses nothing; an answer from an earlier run (a
//! memo hit) consumes no fuel and no run time. Every quota in a chain is charged, so the narrowest
//! one, wherever it sits, is the one that runs out.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::{Gateway, Refusal};
use crate::exec::Executed;
use crate::store::{Metered, QuotaCharge, QuotaUsage};
use crate::ucan::Delegation;

/// The `meta` key a quota is written under.
pub const QUOTA_META: &str = "gateway/quota";

/// The longest window a quota may count over: a year.
const MAX_PER_SECS: i64 = 366 * 24 * 3600;

/// The most quotas a job's note names: as many as a chain may have delegations.
const MAX_NOTED: usize = crate::ucan::validate::MAX_CHAIN;

/// What a quota may limit, each under its own key next to `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Invocations proved by the chain.
    Invocations,
    /// Wasm fuel the runs consume.
    Fuel,
    /// Time the runs take, in whole seconds (counted in milliseconds).
    CpuSeconds,
    /// Jobs handed to an external backend (Bacalhau).
    Jobs,
}

impl Resource {
    /// Every resource, in the order refusals name them.
    pub const ALL: [Resource; 4] = [
        Resource::Invocations,
        Resource::Fuel,
        Resource::CpuSeconds,
        Resource::Jobs,
    ];

    /// Its key in a quota.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Invocations => "invocations",
            Resource::Fuel => "fuel",
            Resource::CpuSeconds => "cpu_seconds",
            Resource::Jobs => "jobs",
        }
    }

    /// The resource written under `key`.
    pub fn from_key(key: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.key() == key)
    }

    /// What `usage` has counted of it, in the unit the store counts it in.
    fn counted(self, usage: &QuotaUsage) -> u64 {
        match self {
            Resource::Invocations => usage.invocations,
            Resource::Fuel => usage.metered.fuel,
            Resource::CpuSeconds => usage.metered.cpu_ms,
            Resource::Jobs => usage.metered.jobs,
        }
    }

    /// A limit as stated in a quota, in the unit the store counts it in.
    fn in_counted_unit(self, limit: u64) -> u64 {
        match self {
            Resource::CpuSeconds => limit.saturating_mul(1000),
            _ => limit,
        }
    }

    /// A count in the store's unit, in the quota's (seconds with their milliseconds for time).
    fn shown(self, counted: u64) -> String {
        match self {
            Resource::CpuSeconds => format!("{}.{:03}", counted / 1000, counted % 1000),
            _ => counted.to_string(),
        }
    }
}

/// A quota as a delegation states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Invocations allowed per window.
    pub invocations: Option<u64>,
    /// Wasm fuel allowed per window.
    pub fuel: Option<u64>,
    /// Seconds of run time allowed per window.
    pub cpu_seconds: Option<u64>,
    /// Jobs handed to an external backend allowed per window.
    pub jobs: Option<u64>,
    /// The window, in seconds.
    pub per: i64,
}

impl Quota {
    /// The quota in a delegation's `meta`, if it states one; an error naming what is wrong with one
    /// that cannot be read (refused rather than ignored: the delegator meant a limit).
    pub fn of(dlg: &Delegation) -> Result<Option<Quota>, String> {
        match dlg.payload.meta.as_ref().and_then(|m| m.get(QUOTA_META)) {
            Some(value) => Quota::parse(value).map(Some),
            None => Ok(None),
        }
    }

    /// A quota from the value of its `meta` key: `per` and at least one limit, each a whole
    /// non-negative number. Any other key is refused: a limit the gateway ignored (a typo, or a
    /// newer one) would leave the delegation unlimited where its issuer meant a limit.
    pub fn parse(value: &Ipld) -> Result<Quota, String> {
        let Ipld::Map(map) = value else {
            return Err(format!("{QUOTA_META} must be a map"));
        };
        let mut quota = Quota {
            invocations: None,
            fuel: None,
            cpu_seconds: None,
            jobs: None,
            per: 0,
        };
        let mut per = None;
        for (key, value) in map {
            if key == "per" {
                per = Some(parse_per(value)?);
                continue;
            }
            let Some(resource) = Resource::from_key(key) else {
                // The key is the delegator's to size: quote only its start.
                let shown: String = key.chars().take(64).collect();
                return Err(format!(
                    "{QUOTA_META} has an unknown key {shown:?} (a quota limits invocations, fuel, \
                     cpu_seconds or jobs, per a duration)"
                ));
            };
            let limit = match value {
                Ipld::Integer(n) => u64::try_from(*n)
                    .map_err(|_| format!("{QUOTA_META}.{key} must not be negative"))?,
                _ => return Err(format!("{QUOTA_META}.{key} must be a whole number")),
            };
            quota.set(resource, limit);
        }
        quota.per =
            per.ok_or_else(|| format!("{QUOTA_META}.per must be a duration such as \"1h\""))?;
        if Resource::ALL.iter().all(|r| quota.limit(*r).is_none()) {
            return Err(format!(
                "{QUOTA_META} must limit at least one of invocations, fuel, cpu_seconds, jobs"
            ));
        }
        Ok(quota)
    }

    /// The value of its `meta` key, as [`Quota::parse`] reads it.
    pub fn to_ipld(&self) -> Ipld {
        let mut map: BTreeMap<String, Ipld> = Resource::ALL
            .iter()
            .filter_map(|r| Some((r.key().to_owned(), Ipld::Integer(self.limit(*r)?.into()))))
            .collect();
        map.insert("per".to_owned(), Ipld::String(format!("{}s", self.per)));
        Ipld::Map(map)
    }

    /// Its limit of `resource`, if it limits it.
    pub fn limit(&self, resource: Resource) -> Option<u64> {
        match resource {
            Resource::Invocations => self.invocations,
            Resource::Fuel => self.fuel,
            Resource::CpuSeconds => self.cpu_seconds,
            Resource::Jobs => self.jobs,
        }
    }

    /// Limits `resource` to `limit`.
    pub fn set(&mut self, resource: Resource, limit: u64) {
        let slot = match resource {
            Resource::Invocations => &mut self.invocations,
            Resource::Fuel => &mut self.fuel,
            Resource::CpuSeconds => &mut self.cpu_seconds,
            Resource::Jobs => &mut self.jobs,
        };
        *slot = Some(limit);
    }

    /// The start and end of the window holding `now`. A parsed quota's window is at least a
    /// second; one built by hand with less counts per second rather than dividing by zero.
    fn window(&self, now: i64) -> (i64, i64) {
        let per = self.per.max(1);
        let start = now - now.rem_euclid(per);
        (start, start.saturating_add(per))
    }

    /// The first resource whose limit `usage` has reached, with the count.
    fn reached(&self, usage: &QuotaUsage) -> Option<(Resource, u64, u64)> {
        Resource::ALL.into_iter().find_map(|r| {
            let limit = self.limit(r)?;
            let counted = r.counted(usage);
            (counted >= r.in_counted_unit(limit)).then_some((r, limit, counted))
        })
    }

    /// Of `metered`, what this quota limits (nothing else is worth counting).
    fn limited(&self, metered: Metered) -> Metered {
        let keep = |r: Resource, n: u64| if self.limit(r).is_some() { n } else { 0 };
        Metered {
            fuel: keep(Resource::Fuel, metered.fuel),
            cpu_ms: keep(Resource::CpuSeconds, metered.cpu_ms),
            jobs: keep(Resource::Jobs, metered.jobs),
        }
    }

    /// Whether it limits what only a run, or a job, can tell.
    fn meters(&self) -> bool {
        self.fuel.is_some() || self.cpu_seconds.is_some() || self.jobs.is_some()
    }

    /// The charge to the window holding `now` of `metered` and, if `invocation`, one invocation.
    fn charge(&self, key: Cid, now: i64, invocation: bool, metered: Metered) -> QuotaCharge {
        let (window, until) = self.window(now);
        QuotaCharge {
            key,
            window,
            until,
            invocations: self.invocations.filter(|_| invocation),
            metered: self.limited(metered),
        }
    }
}

/// `per`: a duration from one second to a year.
fn parse_per(value: &Ipld) -> Result<i64, String> {
    let Ipld::String(text) = value else {
        return Err(format!(
            "{QUOTA_META}.per must be a duration such as \"1h\""
        ));
    };
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .filter(|s| (1..=MAX_PER_SECS).contains(s))
        .ok_or_else(|| {
            let shown: String = text.chars().take(64).collect();
            format!("{QUOTA_META}.per must be a duration from 1s to 366d, not {shown:?}")
        })
}

/// What a run consumed, as quotas count it.
pub(crate) fn consumed(executed: &Executed) -> Metered {
    Metered {
        fuel: executed.fuel_used.unwrap_or(0),
        cpu_ms: executed.run_time.map_or(0, millis),
        jobs: 0,
    }
}

/// A duration in whole milliseconds.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// 429 `QuotaExceeded` naming the delegation `key` and the `resource` whose `limit` its window has
/// reached (`counted` in the store's unit), until the window ends.
fn exceeded(
    key: Cid,
    resource: Resource,
    limit: u64,
    counted: u64,
    until: i64,
    now: i64,
) -> Refusal {
    Refusal::rate_limited(
        "QuotaExceeded",
        format!(
            "delegation {key} allows {limit} {} per window and has used {}; the window ends at \
             {until}",
            resource.key(),
            resource.shown(counted),
        ),
        u64::try_from(until.saturating_sub(now)).unwrap_or(1),
    )
}

/// 429 `QuotaExceeded` for a `charge` whose window had no invocation left when it was committed.
pub(crate) fn no_invocation_left(charge: &QuotaCharge, now: i64) -> Refusal {
    let limit = charge.invocations.unwrap_or(0);
    exceeded(
        charge.key,
        Resource::Invocations,
        limit,
        limit,
        charge.until,
        now,
    )
}

/// One quota of a chain, and the window an invocation was admitted in.
#[derive(Debug, Clone, Copy)]
struct Held {
    key: Cid,
    quota: Quota,
    /// When the invocation was admitted: its charges go to the window holding this.
    at: i64,
}

/// The quotas of one invocation's chain, read and checked before it runs, to be charged as it
/// goes: its run's consumption (and invocation) with its receipt, or for a destructive task the
/// invocation and job with its intent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quotas {
    held: Vec<Held>,
    /// Whether the intent of a destructive task has charged the invocation (and job) already.
    intent_charged: bool,
}

impl Quotas {
    /// The charges of a destructive task's intent: one invocation each, and one job each if the
    /// task will hand one to a backend.
    pub(crate) fn intent_charges(&self, job: bool) -> Vec<QuotaCharge> {
        let metered = Metered {
            jobs: u64::from(job),
            ..Metered::default()
        };
        self.charges(true, metered)
    }

    /// Records that the intent was committed with [`Quotas::intent_charges`].
    pub(crate) fn charged_with_intent(&mut self) {
        self.intent_charged = true;
    }

    /// The charges of the commit storing the receipt of a run that consumed `used`: one invocation
    /// each too, unless the intent counted it.
    pub(crate) fn receipt_charges(&self, used: Metered) -> Vec<QuotaCharge> {
        self.charges(!self.intent_charged, used)
    }

    fn charges(&self, invocation: bool, used: Metered) -> Vec<QuotaCharge> {
        self.held
            .iter()
            .map(|h| h.quota.charge(h.key, h.at, invocation, used))
            .filter(|c| c.invocations.is_some() || !c.metered.is_zero())
            .collect()
    }

    /// The note for the record of a job the task hands to a backend, so the job is counted when
    /// it is recorded (`count_job`; a destructive task's intent counted it already) and its run
    /// when it ends, whichever process settles it. `None` when no quota meters anything.
    pub(crate) fn job_note(&self, count_job: bool) -> Option<Ipld> {
        let quotas: Vec<(Cid, Quota)> = self
            .held
            .iter()
            .filter(|h| h.quota.meters())
            .map(|h| (h.key, h.quota))
            .collect();
        if quotas.is_empty() {
            return None;
        }
        Some(JobNote { count_job, quotas }.to_ipld())
    }
}

/// What the record of a job carries for the quotas its run counts against, opaque to executors:
/// `{"count_job": bool, "quotas": [{"key": link, "quota": {…}}]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobNote {
    /// Whether recording the submitted job counts it.
    count_job: bool,
    /// The quotas, by the delegation holding each.
    quotas: Vec<(Cid, Quota)>,
}

impl JobNote {
    fn to_ipld(&self) -> Ipld {
        let quotas = self
            .quotas
            .iter()
            .map(|(key, quota)| {
                Ipld::Map(BTreeMap::from([
                    ("key".to_owned(), Ipld::Link(*key)),
                    ("quota".to_owned(), quota.to_ipld()),
                ]))
            })
            .collect();
        Ipld::Map(BTreeMap::from([
            ("count_job".to_owned(), Ipld::Bool(self.count_job)),
            ("quotas".to_owned(), Ipld::List(quotas)),
        ]))
    }

    /// Reads a note [`Quotas::job_note`] wrote; `None` for anything else. At most [`MAX_NOTED`]
    /// quotas are read.
    pub(crate) fn read(note: &Ipld) -> Option<JobNote> {
        let Ipld::Map(map) = note else { return None };
        let Some(Ipld::Bool(count_job)) = map.get("count_job") else {
            return None;
        };
        let Some(Ipld::List(items)) = map.get("quotas") else {
            return None;
        };
        let quotas = items
            .iter()
            .take(MAX_NOTED)
            .map(|item| {
                let Ipld::Map(item) = item else { return None };
                let Some(Ipld::Link(key)) = item.get("key") else {
                    return None;
                };
                Some((*key, Quota::parse(item.get("quota")?).ok()?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(JobNote {
            count_job: *count_job,
            quotas,
        })
    }

    /// The charges of recording the submitted job at `now`: one job to each quota limiting jobs,
    /// unless the task's intent counted it.
    pub(crate) fn submission_charges(&self, now: i64) -> Vec<QuotaCharge> {
        if !self.count_job {
            return Vec::new();
        }
        let job = Metered {
            jobs: 1,
            ..Metered::default()
        };
        self.charges(now, job)
    }

    /// The charges of the job's final receipt, stored at `now`, for what its run consumed.
    pub(crate) fn settle_charges(&self, now: i64, used: Metered) -> Vec<QuotaCharge> {
        self.charges(now, used)
    }

    fn charges(&self, now: i64, used: Metered) -> Vec<QuotaCharge> {
        self.quotas
            .iter()
            .map(|(key, quota)| quota.charge(*key, now, false, used))
            .filter(|c| !c.metered.is_zero())
            .collect()
    }
}

impl Gateway {
    /// The quotas of the chain `chain` (root first), each already checked at `now` to have every
    /// limit short of reached; refused with the first that has one reached, or with one that
    /// cannot be read.
    pub(super) async fn quotas(
        &self,
        chain: &[Cid],
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<Quotas, Refusal> {
        let mut held = Vec::new();
        for cid in chain {
            let Some(dlg) = proofs.get(cid) else { continue };
            let quota = Quota::of(dlg).map_err(|e| {
                Refusal::forbidden("InvalidQuota", format!("delegation {cid}: {e}"))
            })?;
            if let Some(quota) = quota {
                held.push(Held {
                    key: *cid,
                    quota,
                    at: now,
                });
            }
        }
        for h in &held {
            let (window, until) = h.quota.window(now);
            let usage = self.ledger.store().quota_used(h.key, window).await?;
            if let Some((resource, limit, counted)) = h.quota.reached(&usage) {
                return Err(exceeded(h.key, resource, limit, counted, until, now));
            }
        }
        Ok(Quotas {
            held,
            intent_charged: false,
        })
    }
}

#[cfg(test)]
#[path = "quota_tests.rs"]
mod tests;
