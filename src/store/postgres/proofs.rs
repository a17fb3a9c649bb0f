//! Delegations kept by CID in PostgreSQL: written by commits (best effort, capped per issuer), read
//! by CID for invocations that cite proofs they do not carry, purged once expired or revoked.

use async_trait::async_trait;
use cid::Cid;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{PostgresStore, db_error, decode_cid};
use crate::store::{ProofStore, Result, StoredDelegation};

// Commits keeping proofs of one issuer take its lock in turn (until they commit), so of two racing
// for the issuer's last slot only one sees it free: without it, each would count the rows committed
// before it began and both would insert. The class key keeps these locks apart from others.
pub(super) const ISSUER_LOCK: &str = "SELECT pg_advisory_xact_lock(752602171, hashtext($1))";
pub(super) const KEEP_PROOF: &str = "INSERT INTO proofs (cid, issuer, audience, expires_at, bytes) \
    SELECT $1, $2, $3, $4, $5 WHERE (SELECT count(*) FROM proofs WHERE issuer = $2) < $6 \
    ON CONFLICT DO NOTHING";
// Revocations are checked here rather than purged on arrival, so a revocation recorded by any
// process takes effect at once.
pub(super) const PROOFS: &str = "SELECT cid, issuer, audience, expires_at, bytes FROM proofs \
    WHERE cid = ANY($1) AND (expires_at IS NULL OR expires_at >= $2) \
    AND NOT EXISTS (SELECT 1 FROM revocations WHERE delegation = proofs.cid)";
pub(super) const PROOFS_OF: &str = "SELECT count(*) FROM proofs WHERE issuer = $1";
pub(super) const DELEGATED_TO: &str = "SELECT 1 FROM proofs \
    WHERE audience = $1 AND (expires_at IS NULL OR expires_at >= $2) \
    AND NOT EXISTS (SELECT 1 FROM revocations WHERE delegation = proofs.cid) LIMIT 1";
const PURGE_PROOFS: &str = "DELETE FROM proofs \
    WHERE expires_at < $1 OR cid IN (SELECT delegation FROM revocations)";

/// Keeps each of `proofs` whose issuer has fewer than `per_issuer` kept (part of a commit).
pub(super) async fn keep(
    conn: &mut PgConnection,
    proofs: &[StoredDelegation],
    per_issuer: usize,
) -> std::result::Result<(), sqlx::Error> {
    if per_issuer == 0 || proofs.is_empty() {
        return Ok(());
    }
    // Locks taken in one order by every commit, so two never wait for each other.
    let mut issuers: Vec<&str> = proofs.iter().map(|d| d.issuer.as_str()).collect();
    issuers.sort_unstable();
    issuers.dedup();
    for issuer in issuers {
        sqlx::query(ISSUER_LOCK)
            .bind(issuer)
            .execute(&mut *conn)
            .await?;
    }
    let cap = i64::try_from(per_issuer).unwrap_or(i64::MAX);
    for d in proofs {
        sqlx::query(KEEP_PROOF)
            .bind(d.cid.to_bytes())
            .bind(&d.issuer)
            .bind(&d.audience)
            .bind(d.expires_at)
            .bind(&d.bytes)
            .bind(cap)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A proofs row: cid, issuer, audience, expiry, bytes.
fn proof_from_row(row: &PgRow) -> Result<StoredDelegation> {
    const OP: &str = "proofs";
    let cid: Vec<u8> = row.try_get(0).map_err(db_error(OP))?;
    Ok(StoredDelegation {
        cid: decode_cid(OP, &cid)?,
        issuer: row.try_get(1).map_err(db_error(OP))?,
        audience: row.try_get(2).map_err(db_error(OP))?,
        expires_at: row.try_get(3).map_err(db_error(OP))?,
        bytes: row.try_get(4).map_err(db_error(OP))?,
    })
}

#[async_trait]
impl ProofStore for PostgresStore {
    async fn proofs(&self, cids: &[Cid], now: i64) -> Result<Vec<StoredDelegation>> {
        const OP: &str = "proofs";
        if cids.is_empty() {
            return Ok(Vec::new());
        }
        let cids: Vec<Vec<u8>> = cids.iter().map(Cid::to_bytes).collect();
        let rows = sqlx::query(PROOFS)
            .bind(cids)
            .bind(now)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error(OP))?;
        rows.iter().map(proof_from_row).collect()
    }

    async fn proofs_of(&self, issuer: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(PROOFS_OF)
            .bind(issuer)
            .fetch_one(&self.inner.pool)
            .await
            .map_err(db_error("proofs_of"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn delegated_to(&self, audience: &str, now: i64) -> Result<bool> {
        let row = sqlx::query(DELEGATED_TO)
            .bind(audience)
            .bind(now)
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error("delegated_to"))?;
        Ok(row.is_some())
    }

    async fn purge_proofs(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(PURGE_PROOFS)
            .bind(before)
            .execute(&self.inner.pool)
            .await
            .map_err(db_error("purge_proofs"))?;
        Ok(done.rows_affected())
    }
}
