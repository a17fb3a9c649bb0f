-- Uses counted against delegation quotas: one row per quota (a delegation's CID) and window.
--
-- A commit adds one use to each quota it charges, in the same transaction as the receipt, and only
-- while the window has uses left, so the count is exact however many processes share the file.
-- Rows of windows that have ended are purged.
CREATE TABLE quota_usage (
    key          BLOB    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    used         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
) STRICT, WITHOUT ROWID;

CREATE INDEX quota_usage_by_end ON quota_usage (window_end);
