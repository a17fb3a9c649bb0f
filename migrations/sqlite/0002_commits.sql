-- Commits shaped like the request path, and state shared by several processes.
--
-- Intents now say which invocation runs the task and until when its run may still be going, so an
-- intent whose run was cut off (a crash) can be answered for that invocation. Pending jobs can be
-- leased to one process at a time. Revocations get a position, so a process can ask for the ones
-- recorded since it last looked.

ALTER TABLE intents ADD COLUMN invocation BLOB;
ALTER TABLE intents ADD COLUMN until_at INTEGER NOT NULL DEFAULT 0;

-- Open intents by when their run ends, for finding interrupted ones.
DROP INDEX intents_open;
CREATE INDEX intents_open ON intents (until_at) WHERE receipt_cid IS NULL;

ALTER TABLE pending_jobs ADD COLUMN holder TEXT;
ALTER TABLE pending_jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;

CREATE TABLE revocations_by_position (
    seq        INTEGER PRIMARY KEY,
    delegation BLOB    NOT NULL UNIQUE,
    revocation BLOB    NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT;
INSERT INTO revocations_by_position (delegation, revocation, revoked_at)
    SELECT delegation, revocation, revoked_at FROM revocations ORDER BY revoked_at;
DROP TABLE revocations;
ALTER TABLE revocations_by_position RENAME TO revocations;
