//! Quota counts in PostgreSQL: charged inside commits, one use per quota and window, never past the
//! window's limit, however many processes charge at once.

use async_trait::async_trait;
use cid::Cid;
use sqlx::PgConnection;

use super::{PostgresStore, db_error};
use crate::store::{QuotaCharge, QuotaStore, Result};

// Adds a use only while the window has one left; a row changed means the use was granted. On a
// conflict the server locks the row (waiting for a transaction charging it to end) and evaluates the
// condition on the row as it is then, so racing commits are counted one after another.
const CHARGE: &str = "INSERT INTO quota_usage (key, window_start, window_end, used) \
    VALUES ($1, $2, $3, 1) \
    ON CONFLICT (key, window_start) DO UPDATE SET used = quota_usage.used + 1 \
    WHERE quota_usage.used < $4";
pub(super) const USED: &str = "SELECT used FROM quota_usage WHERE key = $1 AND window_start = $2";
pub(super) const PURGE_QUOTAS: &str = "DELETE FROM quota_usage WHERE window_end < $1";

/// Charges each quota one use (part of a commit); the first with none left, if any. The caller
/// rolls the commit back then, taking back the uses charged before it.
pub(super) async fn charge(
    conn: &mut PgConnection,
    charges: &[QuotaCharge],
) -> std::result::Result<Option<QuotaCharge>, sqlx::Error> {
    for c in charges {
        if c.limit == 0 {
            return Ok(Some(*c));
        }
        let limit = i64::try_from(c.limit).unwrap_or(i64::MAX);
        let changed = sqlx::query(CHARGE)
            .bind(c.key.to_bytes())
            .bind(c.window)
            .bind(c.until)
            .bind(limit)
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
    async fn quota_used(&self, key: Cid, window: i64) -> Result<u64> {
        let used: Option<i64> = sqlx::query_scalar(USED)
            .bind(key.to_bytes())
            .bind(window)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error("quota_used"))?;
        Ok(used.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
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
