//! Opening a database file: the settings every connection gets, and the migrations that bring its
//! schema up to date.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::classify;
use crate::store::{Result, StoreError, StoreErrorKind};

/// The schema, in order; `PRAGMA user_version` records how many are applied.
const MIGRATIONS: [&str; 6] = [
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_commits.sql"),
    include_str!("../../../migrations/sqlite/0003_proofs.sql"),
    include_str!("../../../migrations/sqlite/0004_quotas.sql"),
    include_str!("../../../migrations/sqlite/0005_quota_resources.sql"),
    include_str!("../../../migrations/sqlite/0006_proof_counts.sql"),
];

/// How long a statement waits for a lock held by another process before failing as unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection to `path` with the settings every connection uses; the writer's may create
/// the file.
pub(super) fn connect(path: &Path, writer: bool) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    // The writing connections gather each commit's WAL frames into a few writes (see `vfs`).
    let opened = match writer.then(super::vfs::register) {
        Some(Ok(vfs)) => Connection::open_with_flags_and_vfs(path, flags, vfs),
        Some(Err(rc)) => {
            tracing::warn!(
                rc,
                "the WAL write layer could not be registered; writing without it"
            );
            Connection::open_with_flags(path, flags)
        }
        None => Connection::open_with_flags(path, flags),
    };
    let conn = opened.map_err(|e| {
        let kind = match classify(&e) {
            StoreErrorKind::Unavailable => StoreErrorKind::Unavailable,
            _ => StoreErrorKind::Open,
        };
        StoreError::with_source(kind, "open", e)
    })?;
    configure(&conn, writer)
        .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?;
    Ok(conn)
}

/// The settings of every connection. The writer switches the file to WAL (a persistent setting);
/// readers are `query_only`, so a write through one is an error instead of a lock fight.
pub(super) fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Not larger: every commit walks the writer's whole cache to drop pages past the end of the
    // file (B-tree rebalancing parks pages at the lock byte's page number, far past the end, so
    // the walk cannot stop early), in time that grows with the cache (at 64 MiB an eighth of the
    // writer's time). Not smaller either: at 2 MiB, reading pages back cost what the walk saved.
    conn.pragma_update(None, "cache_size", if writer { -8_192 } else { -16_384 })?;
    // No memory map: the file grows with every batch, and a reader's next snapshot then remaps
    // it (an unmap, TLB shootdowns on every core, page faults), which cost more than reading the
    // few pages of a lookup. A reader's page cache is dropped with each new snapshot either way.
    conn.pragma_update(None, "mmap_size", 0)?;
    if writer {
        // Small pages: a commit dirties one leaf of each index it inserts into (the keys are
        // random CIDs), and each dirty page is written to the WAL whole, so the page size is most
        // of what a commit writes. Takes effect when the database is created.
        conn.pragma_update(None, "page_size", 1024)?;
        // Reading a non-database fails here, before anything is written to it.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(rusqlite::Error::InvalidQuery);
        }
        // The checkpointer thread does it, outside any commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    } else {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the schema up to date. A database made by the earlier sqlx-based store records its first
/// migration in `_sqlx_migrations`; it counts as applied.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let fail = |e: rusqlite::Error| StoreError::with_source(StoreErrorKind::Migrate, "open", e);
    let mut version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| StoreError::with_source(StoreErrorKind::Open, "open", e))?
        .try_into()
        .unwrap_or(usize::MAX);
    if version == 0 {
        let legacy: Option<i64> = conn
            .query_row(
                "SELECT max(version) FROM _sqlx_migrations WHERE success",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap_or(None)
            .flatten();
        match legacy {
            Some(1) => version = 1,
            Some(_) => {
                return Err(StoreError::new(
                    StoreErrorKind::Migrate,
                    "open",
                    "the database was written by a build with migrations this one does not know",
                ));
            }
            None => {}
        }
    }
    if version > MIGRATIONS.len() {
        return Err(StoreError::new(
            StoreErrorKind::Migrate,
            "open",
            format!(
                "the database is at schema version {version}; this build knows {}",
                MIGRATIONS.len()
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let batch = format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        );
        if let Err(e) = conn.execute_batch(&batch) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(fail(e));
        }
    }
    Ok(())
}
