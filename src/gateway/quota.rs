//! Delegation quotas: a delegation may carry, in its signed `meta`, a quota on the invocations its
//! chain may prove — `"gateway/quota": {"invocations": 100, "per": "1h"}` — and every invocation
//! whose chain includes it counts against it. Libraries that do not know the key ignore it, as the
//! spec asks of unknown `meta` keys; this gateway honours it.
//!
//! Windows are fixed: `per` seconds long, aligned to the Unix epoch. The count is durable, exact and
//! shared by every replica: each use is charged in the commit that stores the invocation's receipt,
//! and the store applies it only while the window has a use left. Before anything runs, the count
//! is read, so an exhausted quota is refused without running the task; two replicas racing for the
//! last use may both run it, but only one receipt is stored and the other is refused. A destructive
//! task is charged with its run-once intent instead, before it starts.
//!
//! A refusal (of any kind) stores nothing, so it uses nothing. Every quota in a chain is charged,
//! so the narrowest one, wherever it sits, is the one that runs out.

use std::collections::HashMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::{Gateway, Refusal};
use crate::store::{Metered, QuotaCharge};
use crate::ucan::Delegation;

/// The `meta` key a quota is written under.
pub const QUOTA_META: &str = "gateway/quota";

/// The longest window a quota may count over: a year.
const MAX_PER_SECS: i64 = 366 * 24 * 3600;

/// A quota as a delegation states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Invocations allowed per window.
    pub invocations: u64,
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

    /// A quota from the value of its `meta` key.
    pub fn parse(value: &Ipld) -> Result<Quota, String> {
        let Ipld::Map(map) = value else {
            return Err(format!("{QUOTA_META} must be a map"));
        };
        let invocations = match map.get("invocations") {
            Some(Ipld::Integer(n)) => u64::try_from(*n)
                .map_err(|_| format!("{QUOTA_META}.invocations must not be negative"))?,
            _ => return Err(format!("{QUOTA_META}.invocations must be an integer")),
        };
        let per = match map.get("per") {
            Some(Ipld::String(text)) => humantime::parse_duration(text)
                .ok()
                .and_then(|d| i64::try_from(d.as_secs()).ok())
                .filter(|s| (1..=MAX_PER_SECS).contains(s))
                .ok_or_else(|| {
                    format!("{QUOTA_META}.per must be a duration from 1s to 366d, not {text:?}")
                })?,
            _ => {
                return Err(format!(
                    "{QUOTA_META}.per must be a duration such as \"1h\""
                ));
            }
        };
        Ok(Quota { invocations, per })
    }

    /// The charge of one use of this quota, held by `key`, at `now`.
    pub fn charge(&self, key: Cid, now: i64) -> QuotaCharge {
        let window = now - now.rem_euclid(self.per);
        QuotaCharge {
            key,
            window,
            until: window.saturating_add(self.per),
            invocations: Some(self.invocations),
            metered: Metered::default(),
        }
    }
}

/// 429 `QuotaExceeded` for `charge`, naming the delegation, until its window ends.
pub(crate) fn exceeded(charge: &QuotaCharge, now: i64) -> Refusal {
    Refusal::rate_limited(
        "QuotaExceeded",
        format!(
            "delegation {} allows {} invocations per window, all used; the window ends at {}",
            charge.key,
            charge.invocations.unwrap_or(0),
            charge.until
        ),
        u64::try_from(charge.until.saturating_sub(now)).unwrap_or(1),
    )
}

impl Gateway {
    /// The quota charges of the chain `chain` (root first), each already checked to have a use left
    /// at `now`; refused with the first that has none, or with one that cannot be read.
    pub(super) async fn quota_charges(
        &self,
        chain: &[Cid],
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<Vec<QuotaCharge>, Refusal> {
        let mut charges = Vec::new();
        for cid in chain {
            let Some(dlg) = proofs.get(cid) else { continue };
            let quota = Quota::of(dlg).map_err(|e| {
                Refusal::forbidden("InvalidQuota", format!("delegation {cid}: {e}"))
            })?;
            if let Some(quota) = quota {
                charges.push(quota.charge(*cid, now));
            }
        }
        for charge in &charges {
            let used = self
                .ledger
                .store()
                .quota_used(charge.key, charge.window)
                .await?
                .invocations;
            if used >= charge.invocations.unwrap_or(0) {
                return Err(exceeded(charge, now));
            }
        }
        Ok(charges)
    }
}
