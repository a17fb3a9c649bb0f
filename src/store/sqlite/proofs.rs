//! Delegations kept by CID in SQLite: written by commits (best effort, capped per issuer), read
//! by CID for invocations that cite proofs they do not carry, purged once expired or revoked.

use cid::Cid;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, db_error, decode_cid};
use crate::store::{ProofStore, Result, StoredDelegation};

// The issuer's count is read in the same statement, inside the commit's transaction, so two
// commits racing for an issuer's last slot cannot both take it (the writer runs them in turn).
// `proof_counts` is kept current by triggers on `proofs` (migration 0006): counting the issuer's
// rows here instead cost every commit a walk over up to the cap's worth of index entries per
// delegation in its chain.
const KEEP_PROOF: &str = "INSERT INTO proofs (cid, issuer, audience, expires_at, bytes) \
    SELECT ?1, ?2, ?3, ?4, ?5 \
    WHERE coalesce((SELECT n FROM proof_counts WHERE issuer = ?2), 0) < ?6 \
    ON CONFLICT DO NOTHING";
// Revocations are checked here rather than purged on arrival, so a revocation recorded by any
// process takes effect at once.
const PROOF: &str = "SELECT cid, issuer, audience, expires_at, bytes FROM proofs \
    WHERE cid = ?1 AND (expires_at IS NULL OR expires_at >= ?2) \
    AND NOT EXISTS (SELECT 1 FROM revocations WHERE delegation = proofs.cid)";
const PROOFS_OF: &str = "SELECT coalesce((SELECT n FROM proof_counts WHERE issuer = ?1), 0)";
const DELEGATED_TO: &str = "SELECT 1 FROM proofs \
    WHERE audience = ?1 AND (expires_at IS NULL OR expires_at >= ?2) \
    AND NOT EXISTS (SELECT 1 FROM revocations WHERE delegation = proofs.cid) LIMIT 1";
const PURGE_PROOFS: &str = "DELETE FROM proofs \
    WHERE expires_at < ?1 OR cid IN (SELECT delegation FROM revocations)";

/// Keeps each of `proofs` whose issuer has fewer than `per_issuer` kept (part of a commit).
pub(super) fn keep(
    conn: &Connection,
    proofs: &[StoredDelegation],
    per_issuer: usize,
) -> Result<()> {
    if per_issuer == 0 {
        return Ok(());
    }
    let cap = i64::try_from(per_issuer).unwrap_or(i64::MAX);
    for d in proofs {
        conn.prepare_cached(KEEP_PROOF)
            .and_then(|mut s| {
                s.execute(params![
                    d.cid.to_bytes(),
                    d.issuer,
                    d.audience,
                    d.expires_at,
                    d.bytes,
                    cap
                ])
            })
            .map_err(db_error("commit"))?;
    }
    Ok(())
}

/// A proofs row: cid, issuer, audience, expiry, bytes.
fn proof_from_row(row: &Row<'_>) -> Result<StoredDelegation> {
    const OP: &str = "proofs";
    let cid: Vec<u8> = row.get(0).map_err(db_error(OP))?;
    Ok(StoredDelegation {
        cid: decode_cid(OP, &cid)?,
        issuer: row.get(1).map_err(db_error(OP))?,
        audience: row.get(2).map_err(db_error(OP))?,
        expires_at: row.get(3).map_err(db_error(OP))?,
        bytes: row.get(4).map_err(db_error(OP))?,
    })
}

#[async_trait::async_trait]
impl ProofStore for SqliteStore {
    async fn proofs(&self, cids: &[Cid], now: i64) -> Result<Vec<StoredDelegation>> {
        const OP: &str = "proofs";
        let cids: Vec<Vec<u8>> = cids.iter().map(Cid::to_bytes).collect();
        self.read(OP, move |conn| {
            let mut statement = conn.prepare_cached(PROOF).map_err(db_error(OP))?;
            let mut out = Vec::new();
            for cid in &cids {
                let found = statement
                    .query_row(params![cid, now], |row| Ok(proof_from_row(row)))
                    .optional()
                    .map_err(db_error(OP))?;
                if let Some(found) = found {
                    out.push(found?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn proofs_of(&self, issuer: &str) -> Result<u64> {
        const OP: &str = "proofs_of";
        let issuer = issuer.to_owned();
        self.read(OP, move |conn| {
            conn.prepare_cached(PROOFS_OF)
                .and_then(|mut s| s.query_row([issuer], |row| row.get::<_, i64>(0)))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(db_error(OP))
        })
        .await
    }

    async fn delegated_to(&self, audience: &str, now: i64) -> Result<bool> {
        const OP: &str = "delegated_to";
        let audience = audience.to_owned();
        self.read(OP, move |conn| {
            conn.prepare_cached(DELEGATED_TO)
                .and_then(|mut s| s.exists(params![audience, now]))
                .map_err(db_error(OP))
        })
        .await
    }

    async fn purge_proofs(&self, before: i64) -> Result<u64> {
        const OP: &str = "purge_proofs";
        self.write(
            OP,
            |_| true,
            move |conn| {
                conn.prepare_cached(PURGE_PROOFS)
                    .and_then(|mut s| s.execute([before]))
                    .map(|n| n as u64)
                    .map_err(db_error(OP))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lookup of a kept proof, and the cap check of keeping one, searches an index, so none
    /// slows down as proofs accumulate; the cap check reads the issuer's count, not its rows.
    #[test]
    fn proof_lookups_use_indexes() {
        let conn = Connection::open_in_memory().unwrap();
        super::super::migrate(&conn).unwrap();
        let plan = |sql: &str| {
            let mut statement = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let n = statement.parameter_count();
            let x = b"x".to_vec();
            let params: Vec<&dyn rusqlite::ToSql> =
                (0..n).map(|_| &x as &dyn rusqlite::ToSql).collect();
            statement
                .query_map(params.as_slice(), |row| row.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let count = "SEARCH proof_counts USING PRIMARY KEY (issuer=?)";
        for (sql, expected) in [
            (PROOF, "SEARCH proofs USING INDEX sqlite_autoindex_proofs_1"),
            (PROOFS_OF, count),
            (KEEP_PROOF, count),
            (DELEGATED_TO, "SEARCH proofs USING INDEX proofs_by_audience"),
        ] {
            let plan = plan(sql);
            assert!(plan.contains(expected), "{sql}\n{plan}");
            assert!(!plan.contains("SCAN proofs"), "{sql}\n{plan}");
        }
        let keep = plan(KEEP_PROOF);
        assert!(!keep.contains("proofs_by_issuer"), "{keep}");
    }
}
