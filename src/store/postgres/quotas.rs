//! Quota counts in PostgreSQL: charged inside commits, one row per quota and window. An invocation
//! is counted only while the window has one left, however many processes charge at once; metered
//! use is added as it is, saturating rather than overflowing.

use async_trait::async_trait;
use cid::Cid;
use sqlx::{PgConnection, Row};

use super::{PostgresStore, db_error};
use crate::store::{Metered, QuotaCharge, QuotaStore, QuotaUsage, Result};

// Adds the charge while the window has an invocation left (`$5` is the limit, `i64::MAX` for a
// charge that counts none); a row changed means it was granted. On a conflict the server locks the
// row (waiting for a transaction charging it to end) and evaluates the condition on the row as it is
// then, so racing commits are counted one after another. `LEAST(n, max - add) + add` is `n + add`
// capped at the largest BIGINT, so no count can overflow.
const CHARGE: &str = "INSERT INTO quota_usage \
    (key, window_start, window_end, invocations, fuel, cpu_ms, jobs) \
    VALUES ($1, $2, $3, $4, $6, $7, $8) \
    ON CONFLICT (key, window_start) DO UPDATE SET \
    invocations = quota_usage.invocations + EXCLUDED.invocations, \
    fuel = LEAST(quota_usage.fuel, 9223372036854775807 - EXCLUDED.fuel) + EXCLUDED.fuel, \
    cpu_ms = LEAST(quota_usage.cpu_ms, 9223372036854775807 - EXCLUDED.cpu_ms) + EXCLUDED.cpu_ms, \
    jobs = LEAST(quota_usage.jobs, 9223372036854775807 - EXCLUDED.jobs) + EXCLUDED.jobs \
    WHERE quota_usage.invocations < $5";
pub(super) const USED: &str = "SELECT invocations, fuel, cpu_ms, jobs FROM quota_usage \
    WHERE key = $1 AND window_start = $2";
pub(super) const PURGE_QUOTAS: &str = "DELETE FROM quota_usage WHERE window_end < $1";

/// A count as stored: counts are kept below `i64::MAX`.
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count as read: never negative.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Applies each charge (part of a commit); the first whose window has no invocation left, if any.
/// The caller rolls the commit back then, taking back what was charged before it.
pub(super) async fn charge(
    conn: &mut PgConnection,
    charges: &[QuotaCharge],
) -> std::result::Result<Option<QuotaCharge>, sqlx::Error> {
    for c in charges {
        if c.invocations == Some(0) {
            return Ok(Some(*c));
        }
        if c.invocations.is_none() && c.metered.is_zero() {
            continue;
        }
        let (counted, limit) = match c.invocations {
            Some(limit) => (1_i64, stored(limit)),
            None => (0, i64::MAX),
        };
        let m = c.metered;
        let changed = sqlx::query(CHARGE)
            .bind(c.key.to_bytes())
            .bind(c.window)
            .bind(c.until)
            .bind(counted)
            .bind(limit)
            .bind(stored(m.fuel))
            .bind(stored(m.cpu_ms))
            .bind(stored(m.jobs))
            .execute(&mut *conn)
            .await?;
        if changed.rows_affected() == 0 {
            return Ok(Some(*c));
        }
    }
    Ok(None)
}

#[async_trait]
impl QuotaStore for PostgresStore {
    async fn quota_used(&self, key: Cid, window: i64) -> Result<QuotaUsage> {
        let row = sqlx::query(USED)
            .bind(key.to_bytes())
            .bind(window)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error("quota_used"))?;
        let Some(row) = row else {
            return Ok(QuotaUsage::default());
        };
        let column = |i: usize| {
            row.try_get::<i64, _>(i)
                .map(count)
                .map_err(db_error("quota_used"))
        };
        Ok(QuotaUsage {
            invocations: column(0)?,
            metered: Metered {
                fuel: column(1)?,
                cpu_ms: column(2)?,
                jobs: column(3)?,
            },
        })
    }

    async fn purge_quotas(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(PURGE_QUOTAS)
            .bind(now)
            .execute(&self.inner.pool)
            .await
            .map_err(db_error("purge_quotas"))?;
        Ok(done.rows_affected())
    }
}
