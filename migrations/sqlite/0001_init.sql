-- Initial schema of the gateway's durable store.
--
-- Every CID is stored in its binary form (`Cid::to_bytes`) in a BLOB column. Tables are STRICT so a
-- mistyped bind fails loudly instead of being coerced. Timestamps are Unix seconds supplied by the
-- caller, the unit UCAN uses. Nothing here is ever updated in place except an intent's completion, so
-- a bad write can add a row but never replace one.

-- Signed receipts, one row per receipt CID. `seq` (the rowid) records insertion order, which breaks
-- ties between receipts created in the same second when the latest one is asked for.
CREATE TABLE receipts (
    seq         INTEGER PRIMARY KEY,
    receipt_cid BLOB    NOT NULL UNIQUE,
    ran         BLOB    NOT NULL,
    task_id     BLOB    NOT NULL,
    work_id     BLOB,
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    pure        INTEGER NOT NULL CHECK (pure IN (0, 1)),
    created_at  INTEGER NOT NULL,
    bytes       BLOB    NOT NULL
) STRICT;

-- Rowid is implicitly the last column of every index, so these also serve "latest first" ordering.
CREATE INDEX receipts_by_ran ON receipts (ran, created_at);
CREATE INDEX receipts_by_task ON receipts (task_id, created_at);
-- Only successful receipts of pure tasks may be reused, so only they are indexed by work id.
CREATE INDEX receipts_memo ON receipts (work_id, created_at) WHERE ok = 1 AND pure = 1;

-- Extra names under which a receipt can be found (for example an effect's task id).
CREATE TABLE receipt_aliases (
    alias       BLOB NOT NULL PRIMARY KEY,
    receipt_cid BLOB NOT NULL REFERENCES receipts (receipt_cid)
) STRICT, WITHOUT ROWID;

-- Content-addressed blobs (Wasm modules, inputs). The caller enforces the size limit.
CREATE TABLE blobs (
    cid   BLOB NOT NULL PRIMARY KEY,
    bytes BLOB NOT NULL
) STRICT;

-- Replay protection: a key is recorded once; a second insert of the same key is a replay.
CREATE TABLE seen (
    key        BLOB NOT NULL PRIMARY KEY,
    expires_at INTEGER
) STRICT, WITHOUT ROWID;

-- Purging walks only the entries that can expire.
CREATE INDEX seen_by_expiry ON seen (expires_at) WHERE expires_at IS NOT NULL;

-- Revoked delegations, with the invocation that revoked each and when.
CREATE TABLE revocations (
    delegation BLOB    NOT NULL PRIMARY KEY,
    revocation BLOB    NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Intents to run tasks that must never run twice. A row without a receipt is a task that may have
-- started before a crash; its completion points at the receipt that settled it.
CREATE TABLE intents (
    task_key    BLOB NOT NULL PRIMARY KEY,
    receipt_cid BLOB REFERENCES receipts (receipt_cid)
) STRICT, WITHOUT ROWID;

-- Startup recovery lists the intents that never completed.
CREATE INDEX intents_open ON intents (task_key) WHERE receipt_cid IS NULL;

-- Jobs submitted to an external backend whose results are still awaited. `seq` keeps submission order.
CREATE TABLE pending_jobs (
    seq     INTEGER PRIMARY KEY,
    key     BLOB    NOT NULL UNIQUE,
    backend TEXT    NOT NULL,
    job_id  TEXT    NOT NULL,
    payload BLOB    NOT NULL
) STRICT;
