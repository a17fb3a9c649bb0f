//! One commit's statements, in the order that lets a refusal stop early, and how an insert that
//! changed nothing is settled (the same value again, or a conflict).

use rusqlite::{Connection, OptionalExtension, params};

use super::*;

/// The statements of one commit, in the order that lets a refusal stop early.
pub(super) fn apply(conn: &Connection, c: &Commit) -> Result<Outcome> {
    const OP: &str = "commit";
    let err = db_error(OP);
    if let Some((key, until)) = &c.claim {
        let claimed = conn
            .prepare_cached(CLAIM)
            .and_then(|mut s| s.execute(params![key.to_bytes(), until]))
            .map_err(err)?;
        if claimed == 0 {
            return Ok(Outcome::Replayed);
        }
    }
    if let Some(exceeded) = quotas::charge(conn, &c.quotas)? {
        return Ok(Outcome::QuotaExceeded(exceeded));
    }
    if let Some(IntentChange::Open {
        task,
        invocation,
        until,
    }) = &c.intent
    {
        let opened = conn
            .prepare_cached(OPEN_INTENT)
            .and_then(|mut s| s.execute(params![task.to_bytes(), invocation.to_bytes(), until]))
            .map_err(db_error(OP))?;
        if opened == 0 {
            let intent = intent_of(conn, *task)?.ok_or_else(|| vanished(OP))?;
            return Ok(Outcome::IntentExists(Box::new(intent)));
        }
    }
    if let Some(r) = &c.receipt {
        let inserted = conn
            .prepare_cached(INSERT_RECEIPT)
            .and_then(|mut s| {
                s.execute(params![
                    r.receipt_cid.to_bytes(),
                    r.ran.to_bytes(),
                    r.task_id.to_bytes(),
                    r.work_id.map(|c| c.to_bytes()),
                    r.ok,
                    r.pure,
                    r.created_at,
                    r.bytes,
                ])
            })
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored = conn
                .prepare_cached(RECEIPT_BY_CID)
                .and_then(|mut s| {
                    s.query_row([r.receipt_cid.to_bytes()], |row| Ok(receipt_from_row(row)))
                        .optional()
                })
                .map_err(db_error(OP))?
                .transpose()?;
            same_or_conflict(stored.as_ref(), r, || {
                format!("receipt {} is stored with other contents", r.receipt_cid)
            })?;
        }
    }
    for (alias, receipt) in &c.aliases {
        let inserted = conn
            .prepare_cached(INSERT_ALIAS)
            .and_then(|mut s| s.execute(params![alias.to_bytes(), receipt.to_bytes()]))
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored = cid_at(conn, ALIAS, *alias)?;
            same_or_conflict(stored.as_ref(), receipt, || {
                format!("alias {alias} already names another receipt")
            })?;
        }
    }
    for (cid, bytes) in &c.blobs {
        let inserted = conn
            .prepare_cached(INSERT_BLOB)
            .and_then(|mut s| s.execute(params![cid.to_bytes(), bytes]))
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored: Option<Vec<u8>> = conn
                .prepare_cached(GET_BLOB)
                .and_then(|mut s| s.query_row([cid.to_bytes()], |row| row.get(0)).optional())
                .map_err(db_error(OP))?;
            same_or_conflict(stored.as_ref(), bytes, || {
                format!("blob {cid} is stored with other bytes")
            })?;
        }
    }
    if let Some((delegation, revocation, at)) = &c.revocation {
        conn.prepare_cached(INSERT_REVOCATION)
            .and_then(|mut s| s.execute(params![delegation.to_bytes(), revocation.to_bytes(), at]))
            .map_err(db_error(OP))?;
    }
    if let Some(IntentChange::Complete { task, receipt }) = &c.intent {
        let updated = conn
            .prepare_cached(COMPLETE_INTENT)
            .and_then(|mut s| s.execute(params![receipt.to_bytes(), task.to_bytes()]))
            .map_err(db_error(OP))?;
        if updated == 0 {
            let Some(intent) = intent_of(conn, *task)? else {
                let message = format!("no intent recorded for {task}");
                return Err(StoreError::new(StoreErrorKind::NotFound, OP, message));
            };
            let completed = IntentState::Completed { receipt: *receipt };
            same_or_conflict(Some(&intent.state), &completed, || {
                format!("intent {task} was completed by another receipt")
            })?;
        }
    }
    for job in &c.add_jobs {
        let inserted = conn
            .prepare_cached(INSERT_JOB)
            .and_then(|mut s| {
                s.execute(params![
                    job.key.to_bytes(),
                    job.backend,
                    job.job_id,
                    job.payload
                ])
            })
            .map_err(db_error(OP))?;
        if inserted == 0 {
            let stored = conn
                .prepare_cached(PENDING_JOB)
                .and_then(|mut s| {
                    s.query_row([job.key.to_bytes()], |row| Ok(job_from_row(row, 0)))
                        .optional()
                })
                .map_err(db_error(OP))?
                .transpose()?;
            same_or_conflict(stored.as_ref(), job, || {
                format!("another job is already pending under {}", job.key)
            })?;
        }
    }
    for key in &c.remove_jobs {
        conn.prepare_cached(REMOVE_JOB)
            .and_then(|mut s| s.execute([key.to_bytes()]))
            .map_err(db_error(OP))?;
    }
    proofs::keep(conn, &c.proofs, c.proofs_per_issuer)?;
    Ok(Outcome::Committed)
}

/// Settles an insert that changed nothing because `stored` was already under its key: the same value
/// again is a no-op; a different one is a conflict, and the commit is not written.
fn same_or_conflict<T: PartialEq<U> + ?Sized, U: ?Sized>(
    stored: Option<&T>,
    written: &U,
    describe: impl FnOnce() -> String,
) -> Result<()> {
    match stored {
        Some(stored) if stored == written => Ok(()),
        Some(_) => Err(StoreError::new(
            StoreErrorKind::Conflict,
            "commit",
            describe(),
        )),
        None => Err(vanished("commit")),
    }
}

/// Nothing here deletes receipts, aliases, blobs or intents, so only another program writing to
/// the file can make a conflicting row disappear mid-commit.
fn vanished(op: &'static str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Query,
        op,
        "the conflicting row vanished during the call; another program is writing to the database",
    )
}
