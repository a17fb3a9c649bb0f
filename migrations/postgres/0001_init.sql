-- The gateway's durable store in PostgreSQL: the same tables as the SQLite schema (migrations/sqlite/),
-- for several gateway processes sharing one database.
--
-- Every CID is stored in its binary form (`Cid::to_bytes`) in a BYTEA column; timestamps are Unix
-- seconds supplied by the caller. Unique constraints decide every race between processes: of any
-- number of transactions inserting one replay key or one intent, one inserts the row and the others
-- find it there (`ON CONFLICT DO NOTHING`). Nothing is updated in place except an intent's completion
-- and a job's lease.

-- Signed receipts, one row per receipt CID. `seq` records insertion order, which breaks ties between
-- receipts created in the same second when the latest one is asked for.
CREATE TABLE receipts (
    seq         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receipt_cid BYTEA   NOT NULL UNIQUE,
    ran         BYTEA   NOT NULL,
    task_id     BYTEA   NOT NULL,
    work_id     BYTEA,
    ok          BOOLEAN NOT NULL,
    pure        BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL,
    bytes       BYTEA   NOT NULL
);

-- "Latest first" lookups read the first entry of each index.
CREATE INDEX receipts_by_ran ON receipts (ran, created_at DESC, seq DESC);
CREATE INDEX receipts_by_task ON receipts (task_id, created_at DESC, seq DESC);
-- Only successful receipts of pure tasks may be reused, so only they are indexed by work id.
CREATE INDEX receipts_memo ON receipts (work_id, created_at DESC, seq DESC) WHERE ok AND pure;

-- Extra names under which a receipt can be found (for example an effect's task id).
CREATE TABLE receipt_aliases (
    alias       BYTEA NOT NULL PRIMARY KEY,
    receipt_cid BYTEA NOT NULL REFERENCES receipts (receipt_cid)
);

-- Content-addressed blobs (Wasm modules, inputs). The caller enforces the size limit.
CREATE TABLE blobs (
    cid   BYTEA NOT NULL PRIMARY KEY,
    bytes BYTEA NOT NULL
);

-- Replay protection: a key is inserted once; a second insert of the same key is a replay.
CREATE TABLE seen (
    key        BYTEA NOT NULL PRIMARY KEY,
    expires_at BIGINT
);

-- Purging walks only the entries that can expire.
CREATE INDEX seen_by_expiry ON seen (expires_at) WHERE expires_at IS NOT NULL;

-- Revoked delegations, with the invocation that revoked each and when. `seq` is the position other
-- processes ask from; revocations are inserted under a transaction-scoped advisory lock, so positions
-- become visible in order and a reader never skips one still being committed.
CREATE TABLE revocations (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delegation BYTEA  NOT NULL UNIQUE,
    revocation BYTEA  NOT NULL,
    revoked_at BIGINT NOT NULL
);

-- Intents to run tasks that must never run twice. A row without a receipt is a task that may have
-- started; `until_at` is when its run can no longer be going.
CREATE TABLE intents (
    task_key    BYTEA  NOT NULL PRIMARY KEY,
    invocation  BYTEA  NOT NULL,
    until_at    BIGINT NOT NULL,
    receipt_cid BYTEA  REFERENCES receipts (receipt_cid)
);

-- Finding interrupted runs walks only the open intents.
CREATE INDEX intents_open ON intents (until_at) WHERE receipt_cid IS NULL;

-- Jobs submitted to an external backend whose results are still awaited, in submission order. A job
-- is watched by the process holding its lease until `lease_until`.
CREATE TABLE pending_jobs (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         BYTEA  NOT NULL UNIQUE,
    backend     TEXT   NOT NULL,
    job_id      TEXT   NOT NULL,
    payload     BYTEA  NOT NULL,
    holder      TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
