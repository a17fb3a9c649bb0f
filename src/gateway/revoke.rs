//! Revocation, written once for every wire format: `/ucan/revoke` (UCAN 1.0) and `ucan/revoke`
//! (ucanto) each establish, by their own rules, which delegation is revoked and that the revoker may
//! revoke it; [`Gateway::revoke`] then claims the invocation's replay key, records the revocation,
//! honours it from then on, and answers with a stored receipt.
//!
//! The UCAN 1.0 rule (revocation spec, "Scope"): the issuer of any delegation on the path to a
//! delegation may revoke it. The revoked delegation must come with the request, and when the revoker
//! is not its direct issuer, so must a `path` witness: delegations, root first, ending at the revoked
//! one, each signed, aligned (`aud` → next `iss`), and one of them issued by the revoker. This keeps
//! spurious revocations from strangers out of the store. Revocations are permanent.

use std::collections::HashMap;
use std::time::Instant;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::inbound::{Claim, Inbound};
use super::ledger::Record;
use super::{Answer, Gateway, REVOKE_COMMAND, Refusal};
use crate::did::PublicKey;
use crate::receipt::{Effects, Out, ReceiptBody, gateway_meta};
use crate::store::Commit;
use crate::task::work_id;
use crate::ucan::validate::unix_now;
use crate::ucan::{Delegation, ErrorKind, Invocation, ValidationError};

fn verify_token(envelope: &crate::ucan::Envelope, issuer: &str) -> Result<(), Refusal> {
    let key = PublicKey::from_did(issuer).map_err(|e| {
        ValidationError::new(ErrorKind::InvalidSignature, format!("issuer key: {e}"))
    })?;
    envelope.verify(&key).map_err(|_| {
        Refusal::from(ValidationError::new(
            ErrorKind::InvalidSignature,
            format!("token {} is not signed by {issuer}", envelope.cid),
        ))
    })
}

fn link(args: &std::collections::BTreeMap<String, Ipld>, key: &str) -> Option<Cid> {
    match args.get(key) {
        Some(Ipld::Link(cid)) => Some(*cid),
        _ => None,
    }
}

impl Gateway {
    /// The delegation `inbound` revokes, if it is a revocation whose right to revoke holds; `None`
    /// for any other command.
    pub(super) fn revocation_target(
        &self,
        inbound: &Inbound<'_>,
        now: i64,
    ) -> Result<Option<Cid>, Refusal> {
        match &inbound.claim {
            Claim::Ucan { invocation, proofs }
                if invocation.payload.cmd.as_str() == REVOKE_COMMAND =>
            {
                self.ucan_revocation_target(invocation, proofs, now)
                    .map(Some)
            }
            Claim::Ucan { .. } => Ok(None),
            Claim::Checked { revokes, .. } => Ok(*revokes),
        }
    }

    /// Records the revocation of `target` by `inbound` and answers with a stored receipt saying so.
    pub(super) async fn revoke(
        &self,
        inbound: &Inbound<'_>,
        target: Cid,
        started: Instant,
    ) -> Result<Answer, Refusal> {
        let payload = inbound.payload.as_ref();
        let expires = match &inbound.claim {
            Claim::Checked { auth, .. } => auth.expires,
            Claim::Ucan { .. } => payload.exp,
        };
        let task = payload.task_id();
        let body = ReceiptBody {
            ran: inbound.cid,
            task,
            out: Out::Ok(Ipld::Map(
                [("revoked".to_owned(), Ipld::Link(target))].into(),
            )),
            fx: Effects::default(),
            meta: gateway_meta("built-in", None, started.elapsed(), None),
        };
        // A revocation changes state: never a memoization source.
        let record = Record::unshared(
            inbound.cid,
            task,
            Some(work_id(&payload.cmd, &payload.args)),
        );
        // The replay key, the revocation and its receipt in one commit.
        let commit = Commit {
            revocation: Some((target, inbound.cid, unix_now())),
            ..Commit::default().with_claim(inbound.replay.key, self.authority.seen_until(expires))
        };
        let receipt = self.commit(record, body, commit).await?;
        self.authority.revoke(target);
        tracing::info!(delegation = %target, by = %payload.iss, "delegation revoked");
        Ok(Answer::new(receipt, Vec::new()))
    }

    /// The UCAN 1.0 right to revoke (see the module docs): the delegation revoked, once the
    /// revoker's signature, expiry and place on the path are checked.
    fn ucan_revocation_target(
        &self,
        invocation: &Invocation,
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<Cid, Refusal> {
        let inv = &invocation.payload;
        verify_token(&invocation.envelope, &inv.iss)?;
        if let Some(exp) = inv.exp
            && now > exp.saturating_add(self.authority.leeway())
        {
            return Err(ValidationError::new(
                ErrorKind::Expired,
                format!("revocation expired at {exp}"),
            )
            .into());
        }
        let target = link(&inv.args, "revoke").ok_or_else(|| {
            Refusal::malformed(
                "MalformedToken",
                "a revocation needs args.revoke: a link to the delegation",
            )
        })?;
        let revoked = proofs.get(&target).ok_or_else(|| {
            Refusal::from(ValidationError::in_proof(
                ErrorKind::UnavailableProof,
                target,
                "send the delegation being revoked along with the revocation",
            ))
        })?;

        // The path: the revoked delegation alone, or the witness chain ending at it.
        let path: Vec<&Delegation> = match inv.args.get("path") {
            None => vec![revoked],
            Some(Ipld::List(items)) => items
                .iter()
                .map(|item| match item {
                    Ipld::Link(cid) => proofs.get(cid).ok_or_else(|| {
                        Refusal::from(ValidationError::in_proof(
                            ErrorKind::UnavailableProof,
                            *cid,
                            "a delegation on the revocation path was not supplied",
                        ))
                    }),
                    _ => Err(Refusal::malformed(
                        "MalformedToken",
                        "args.path must be a list of links",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(Refusal::malformed(
                    "MalformedToken",
                    "args.path must be a list of links",
                ));
            }
        };
        if path.last().map(|d| d.cid()) != Some(target) {
            return Err(Refusal::malformed(
                "MalformedToken",
                "args.path must end with the revoked delegation",
            ));
        }
        for pair in path.windows(2) {
            if pair[0].payload.aud != pair[1].payload.iss {
                return Err(ValidationError::in_proof(
                    ErrorKind::InvalidAudience,
                    pair[0].cid(),
                    "the revocation path is not a chain",
                )
                .into());
            }
        }
        if !path.iter().any(|d| d.payload.iss == inv.iss) {
            return Err(Refusal::forbidden(
                "InvalidClaim",
                format!(
                    "{} issued no delegation on the path to {target}, so cannot revoke it",
                    inv.iss
                ),
            ));
        }
        for dlg in &path {
            verify_token(&dlg.envelope, &dlg.payload.iss)?;
        }

        Ok(target)
    }
}
