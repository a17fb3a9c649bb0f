//! Rows back into the store's values, and database errors into the store's error kinds.

use cid::Cid;
use rusqlite::{ErrorCode, Row};

use crate::store::{
    Intent, IntentState, JobEntry, Result, StoreError, StoreErrorKind, StoredReceipt,
};

/// A receipt row, its columns in [`receipts!`] order.
pub(super) fn receipt_from_row(row: &Row<'_>) -> Result<StoredReceipt> {
    const OP: &str = "receipt";
    let get_err = db_error(OP);
    let work: Option<Vec<u8>> = row.get(3).map_err(get_err)?;
    Ok(StoredReceipt {
        receipt_cid: cid_column(row, 0)?,
        ran: cid_column(row, 1)?,
        task_id: cid_column(row, 2)?,
        work_id: work.map(|b| decode_cid(OP, &b)).transpose()?,
        ok: row.get(4).map_err(db_error(OP))?,
        pure: row.get(5).map_err(db_error(OP))?,
        created_at: row.get(6).map_err(db_error(OP))?,
        bytes: row.get(7).map_err(db_error(OP))?,
    })
}

/// An intent row: task, invocation, until, receipt.
pub(super) fn intent_from_row(row: &Row<'_>) -> Result<Intent> {
    const OP: &str = "intent";
    let task = cid_column(row, 0)?;
    let invocation: Option<Vec<u8>> = row.get(1).map_err(db_error(OP))?;
    let receipt: Option<Vec<u8>> = row.get(3).map_err(db_error(OP))?;
    Ok(Intent {
        task,
        // Intents written before invocations were recorded name only their task.
        invocation: invocation
            .map(|b| decode_cid(OP, &b))
            .transpose()?
            .unwrap_or(task),
        until: row.get(2).map_err(db_error(OP))?,
        state: match receipt {
            None => IntentState::Open,
            Some(bytes) => IntentState::Completed {
                receipt: decode_cid(OP, &bytes)?,
            },
        },
    })
}

/// A pending-job row from column `at`: key, backend, job id, payload.
pub(super) fn job_from_row(row: &Row<'_>, at: usize) -> Result<JobEntry> {
    const OP: &str = "pending";
    Ok(JobEntry {
        key: cid_column(row, at)?,
        backend: row.get(at + 1).map_err(db_error(OP))?,
        job_id: row.get(at + 2).map_err(db_error(OP))?,
        payload: row.get(at + 3).map_err(db_error(OP))?,
    })
}

/// The CID stored in column `index` of `row`.
fn cid_column(row: &Row<'_>, index: usize) -> Result<Cid> {
    let bytes: Vec<u8> = row.get(index).map_err(db_error("read"))?;
    decode_cid("read", &bytes)
}

/// A CID from its stored binary form; anything else in a CID column means the file was damaged or
/// written by something other than this store.
pub(super) fn decode_cid(op: &'static str, bytes: &[u8]) -> Result<Cid> {
    let cid = Cid::try_from(bytes)
        .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupt, op, e))?;
    // `try_from` stops at the end of the CID; trailing bytes are damage too.
    if cid.encoded_len() != bytes.len() {
        let message = "trailing bytes after a stored CID";
        return Err(StoreError::new(StoreErrorKind::Corrupt, op, message));
    }
    Ok(cid)
}

/// Maps a database error of operation `op`.
pub(super) fn db_error(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::with_source(classify(&e), op, e)
}

/// Sorts a database error into transient trouble (worth a retry), damage, a reference to something
/// not stored, or a rejected statement.
pub(super) fn classify(e: &rusqlite::Error) -> StoreErrorKind {
    use rusqlite::Error as E;
    match e {
        E::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::OutOfMemory
            | ErrorCode::ReadOnly
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen => StoreErrorKind::Unavailable,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreErrorKind::Corrupt,
            // The only foreign keys point at receipts: an alias or intent completion naming a
            // receipt that is not stored.
            ErrorCode::ConstraintViolation
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
            {
                StoreErrorKind::NotFound
            }
            _ => StoreErrorKind::Query,
        },
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..) => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Query,
    }
}
