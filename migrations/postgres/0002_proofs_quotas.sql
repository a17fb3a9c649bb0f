-- Delegations kept by CID, and the uses counted against delegation quotas (as
-- migrations/sqlite/0003_proofs.sql and 0004_quotas.sql).

-- Delegations kept by CID, so an invocation may cite its proofs without carrying them. A row is
-- written once and never changed; it is deleted when the delegation has expired or been revoked.
-- The issuer is kept to cap how many one issuer may have stored, the audience so a new delegation can
-- be shown to rest on a kept one, the expiry to skip and purge expired ones.
CREATE TABLE proofs (
    cid        BYTEA  NOT NULL PRIMARY KEY,
    issuer     TEXT   NOT NULL,
    audience   TEXT   NOT NULL,
    expires_at BIGINT,
    bytes      BYTEA  NOT NULL
);

CREATE INDEX proofs_by_issuer ON proofs (issuer);
CREATE INDEX proofs_by_audience ON proofs (audience);
CREATE INDEX proofs_by_expiry ON proofs (expires_at) WHERE expires_at IS NOT NULL;

-- One row per quota (a delegation's CID) and window. A commit adds one use to each quota it charges,
-- in the same transaction as the receipt, and only while the window has uses left: the upsert locks
-- the row and re-reads `used` once it holds it, so the count is exact however many processes share
-- the database. Rows of windows that have ended are purged.
CREATE TABLE quota_usage (
    key          BYTEA  NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    used         BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);

CREATE INDEX quota_usage_by_end ON quota_usage (window_end);
