//! Quota counts in SQLite: charged inside commits, one row per quota and window. An invocation is
//! counted only while the window has one left; metered use is added as it is, saturating rather
//! than overflowing.

use cid::Cid;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db_error};
use crate::store::{Metered, QuotaCharge, QuotaStore, QuotaUsage, Result};

// Adds the charge while the window has an invocation left (`?5` is the limit, `i64::MAX` for a
// charge that counts none); a row changed means it was granted. `MIN(n, max - add) + add` is `n +
// add` capped at the largest integer, so no count can overflow.
const CHARGE: &str = "INSERT INTO quota_usage \
    (key, window_start, window_end, invocations, fuel, cpu_ms, jobs) \
    VALUES (?1, ?2, ?3, ?4, ?6, ?7, ?8) \
    ON CONFLICT (key, window_start) DO UPDATE SET \
    invocations = invocations + excluded.invocations, \
    fuel = MIN(fuel, 9223372036854775807 - excluded.fuel) + excluded.fuel, \
    cpu_ms = MIN(cpu_ms, 9223372036854775807 - excluded.cpu_ms) + excluded.cpu_ms, \
    jobs = MIN(jobs, 9223372036854775807 - excluded.jobs) + excluded.jobs \
    WHERE invocations < ?5";
const USED: &str = "SELECT invocations, fuel, cpu_ms, jobs FROM quota_usage \
    WHERE key = ?1 AND window_start = ?2";
const PURGE_QUOTAS: &str = "DELETE FROM quota_usage WHERE window_end < ?1";

/// A count as stored: counts are kept below `i64::MAX`.
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Applies each charge (part of a commit); the first whose window has no invocation left, if any.
/// The caller rolls the commit back then.
pub(super) fn charge(conn: &Connection, charges: &[QuotaCharge]) -> Result<Option<QuotaCharge>> {
    for c in charges {
        if c.invocations == Some(0) {
            return Ok(Some(*c));
        }
        if c.invocations.is_none() && c.metered.is_zero() {
            continue;
        }
        let (counted, limit) = match c.invocations {
            Some(limit) => (1, stored(limit)),
            None => (0, i64::MAX),
        };
        let m = c.metered;
        let changed = conn
            .prepare_cached(CHARGE)
            .and_then(|mut s| {
                s.execute(params![
                    c.key.to_bytes(),
                    c.window,
                    c.until,
                    counted,
                    limit,
                    stored(m.fuel),
                    stored(m.cpu_ms),
                    stored(m.jobs),
                ])
            })
            .map_err(db_error("commit"))?;
        if changed == 0 {
            return Ok(Some(*c));
        }
    }
    Ok(None)
}

/// A count as read: never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait::async_trait]
impl QuotaStore for SqliteStore {
    async fn quota_used(&self, key: Cid, window: i64) -> Result<QuotaUsage> {
        const OP: &str = "quota_used";
        self.read(OP, move |conn| {
            conn.prepare_cached(USED)
                .and_then(|mut s| {
                    s.query_row(params![key.to_bytes(), window], |row| {
                        Ok(QuotaUsage {
                            invocations: count(row.get(0)?),
                            metered: Metered {
                                fuel: count(row.get(1)?),
                                cpu_ms: count(row.get(2)?),
                                jobs: count(row.get(3)?),
                            },
                        })
                    })
                    .optional()
                })
                .map(Option::unwrap_or_default)
                .map_err(db_error(OP))
        })
        .await
    }

    async fn purge_quotas(&self, now: i64) -> Result<u64> {
        const OP: &str = "purge_quotas";
        self.write(
            OP,
            |_| true,
            move |conn| {
                conn.prepare_cached(PURGE_QUOTAS)
                    .and_then(|mut s| s.execute([now]))
                    .map(|n| n as u64)
                    .map_err(db_error(OP))
            },
        )
        .await
    }
}
