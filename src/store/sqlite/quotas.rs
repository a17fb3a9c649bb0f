//! Quota counts in SQLite: charged inside commits, one use per quota and window, never past the
//! window's limit.

use cid::Cid;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db_error};
use crate::store::{QuotaCharge, QuotaStore, Result};

// Adds a use only while the window has one left; a row changed means the use was granted.
const CHARGE: &str = "INSERT INTO quota_usage (key, window_start, window_end, used) \
    VALUES (?1, ?2, ?3, 1) \
    ON CONFLICT (key, window_start) DO UPDATE SET used = used + 1 WHERE used < ?4";
const USED: &str = "SELECT used FROM quota_usage WHERE key = ?1 AND window_start = ?2";
const PURGE_QUOTAS: &str = "DELETE FROM quota_usage WHERE window_end < ?1";

/// Charges each quota one use (part of a commit); the first with none left, if any. The caller
/// rolls the commit back then.
pub(super) fn charge(conn: &Connection, charges: &[QuotaCharge]) -> Result<Option<QuotaCharge>> {
    for c in charges {
        if c.limit == 0 {
            return Ok(Some(*c));
        }
        let limit = i64::try_from(c.limit).unwrap_or(i64::MAX);
        let changed = conn
            .prepare_cached(CHARGE)
            .and_then(|mut s| s.execute(params![c.key.to_bytes(), c.window, c.until, limit]))
            .map_err(db_error("commit"))?;
        if changed == 0 {
            return Ok(Some(*c));
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl QuotaStore for SqliteStore {
    async fn quota_used(&self, key: Cid, window: i64) -> Result<u64> {
        const OP: &str = "quota_used";
        self.read(OP, move |conn| {
            conn.prepare_cached(USED)
                .and_then(|mut s| {
                    s.query_row(params![key.to_bytes(), window], |row| row.get::<_, i64>(0))
                        .optional()
                })
                .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
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
