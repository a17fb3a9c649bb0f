-- Quotas may limit what runs consume as well as how many there are: the fuel they burn, the time
-- they run (counted in milliseconds) and the jobs they hand to an external backend. A window's row
-- counts all of them; rows written before this migration counted invocations only, so the new
-- counts start at zero. `used` was the invocation count and is named for it now.
ALTER TABLE quota_usage RENAME COLUMN used TO invocations;
ALTER TABLE quota_usage ADD COLUMN fuel INTEGER NOT NULL DEFAULT 0;
ALTER TABLE quota_usage ADD COLUMN cpu_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE quota_usage ADD COLUMN jobs INTEGER NOT NULL DEFAULT 0;
