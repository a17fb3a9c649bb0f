-- Delegations kept by CID, so an invocation may cite its proofs without carrying them.
--
-- A row is written once and never changed; it is deleted when the delegation has expired or been
-- revoked. The issuer is kept to cap how many one issuer may have stored, the audience so a new
-- delegation can be shown to rest on a kept one, the expiry to skip and purge expired ones. A rowid
-- table, as for blobs: rows hold whole tokens, too large for a WITHOUT ROWID table's pages.
CREATE TABLE proofs (
    cid        BLOB    NOT NULL PRIMARY KEY,
    issuer     TEXT    NOT NULL,
    audience   TEXT    NOT NULL,
    expires_at INTEGER,
    bytes      BLOB    NOT NULL
) STRICT;

CREATE INDEX proofs_by_issuer ON proofs (issuer);
CREATE INDEX proofs_by_audience ON proofs (audience);
CREATE INDEX proofs_by_expiry ON proofs (expires_at) WHERE expires_at IS NOT NULL;
