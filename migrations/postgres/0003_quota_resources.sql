-- Quotas may limit what runs consume as well as how many there are (as
-- migrations/sqlite/0005_quota_resources.sql): the fuel they burn, the time they run (counted in
-- milliseconds) and the jobs they hand to an external backend. Metered counts are added by the
-- commit that records what was consumed, without a condition (it has been consumed); only the
-- invocation count is charged conditionally. Rows written before this migration counted
-- invocations only, so the new counts start at zero.
ALTER TABLE quota_usage RENAME COLUMN used TO invocations;
ALTER TABLE quota_usage
    ADD COLUMN fuel   BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cpu_ms BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN jobs   BIGINT NOT NULL DEFAULT 0;
