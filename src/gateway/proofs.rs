//! Proofs by reference: clients stop resending whole chains. The delegations that proved an accepted
//! invocation are kept by CID in the same commit as its receipt, and a client may upload delegations
//! ahead of time (`POST /delegations`). An invocation whose `prf` cites CIDs its request lacks is
//! completed from the store before its chain is checked; what is still missing is refused as 510
//! `UnavailableProof` listing exactly those CIDs.
//!
//! The store is read here, in the gateway, before the pure validator runs: `ucan::validate` does no
//! I/O, it only ever sees a map of delegations.
//!
//! What is kept is bounded twice: at most [`MAX_PROOFS_PER_ISSUER`] delegations per issuer, and an
//! upload is taken only if every delegation in it rests on an honoured subject — a root issued by a
//! subject this gateway acts for, or a delegation whose issuer is the audience of one kept or in the
//! same upload. A `sub` field alone is a claim anyone can write; a stranger with fresh keys could
//! otherwise fill the store. Expired and revoked delegations are never returned by the store, and
//! the purge sweep removes them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use cid::Cid;

use super::{Gateway, Refusal};
use crate::store::{Commit, StoredDelegation};
use crate::ucan::container::Container;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::validate::{MAX_CHAIN, unix_now};
use crate::ucan::{Delegation, ErrorKind, Invocation, ValidationError};

/// The most delegations kept for one issuer. An upload past it is refused as
/// `TooManyDelegations`; proofs of accepted invocations past it are simply not kept.
pub const MAX_PROOFS_PER_ISSUER: usize = 256;

/// The stored form of a delegation.
pub(crate) fn stored(dlg: &Delegation) -> StoredDelegation {
    StoredDelegation {
        cid: dlg.cid(),
        issuer: dlg.payload.iss.clone(),
        audience: dlg.payload.aud.clone(),
        expires_at: dlg.payload.exp,
        bytes: dlg.bytes().to_vec(),
    }
}

/// A kept delegation decoded again; its CID is computed from the bytes, never taken from the row.
fn decode(kept: &StoredDelegation) -> Option<Delegation> {
    let dlg = Envelope::decode(&kept.bytes)
        .ok()
        .filter(|e| e.kind == Kind::Delegation)
        .and_then(|e| Delegation::from_envelope(e).ok())?;
    (dlg.cid() == kept.cid).then_some(dlg)
}

/// Delegations this process knows to be kept already, so the commit of every invocation does not
/// rewrite its chain. Bounded: when full it is emptied (the next commits write a few rows again,
/// which the store takes as no-ops).
#[derive(Default)]
pub(crate) struct Kept(Mutex<HashSet<Cid>>);

const KEPT_CACHE_MAX: usize = 65_536;

impl Kept {
    /// Whether `cid` is known to be kept.
    fn contains(&self, cid: &Cid) -> bool {
        self.0.lock().map(|set| set.contains(cid)).unwrap_or(false)
    }

    /// Records that `cids` are kept.
    pub(crate) fn mark(&self, cids: impl IntoIterator<Item = Cid>) {
        if let Ok(mut set) = self.0.lock() {
            for cid in cids {
                if set.len() >= KEPT_CACHE_MAX {
                    set.clear();
                }
                set.insert(cid);
            }
        }
    }
}

impl Gateway {
    /// The request's delegations, completed from the store with those `invocation`'s `prf` cites
    /// that the request lacks, and the CIDs still missing after that (empty when none is). The
    /// validator reports a missing proof in its own order of checks; the caller turns that report
    /// into a 510 listing every missing CID.
    pub(super) async fn complete_proofs<'p>(
        &self,
        invocation: &Invocation,
        proofs: &'p HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<(Cow<'p, HashMap<Cid, Delegation>>, Vec<Cid>), Refusal> {
        let prf = &invocation.payload.prf;
        let mut wanted: Vec<Cid> = prf
            .iter()
            .filter(|c| !proofs.contains_key(c))
            .copied()
            .collect();
        // A chain too long is refused by the validator; it costs no store read.
        if wanted.is_empty() || prf.len() > MAX_CHAIN {
            return Ok((Cow::Borrowed(proofs), Vec::new()));
        }
        wanted.sort();
        wanted.dedup();
        let usable_from = now.saturating_sub(self.authority.leeway());
        let kept = self.ledger.store().proofs(&wanted, usable_from).await?;
        let mut all = proofs.clone();
        for row in &kept {
            match decode(row) {
                Some(dlg) => {
                    all.insert(dlg.cid(), dlg);
                }
                None => tracing::error!(proof = %row.cid, "a kept delegation does not decode"),
            }
        }
        self.kept.mark(kept.iter().map(|k| k.cid));
        let missing = wanted
            .into_iter()
            .filter(|c| !all.contains_key(c))
            .collect();
        Ok((Cow::Owned(all), missing))
    }

    /// The delegations of `chain` not known to be kept yet, to keep with the receipt.
    pub(super) fn proofs_to_keep(
        &self,
        chain: &[Cid],
        proofs: &HashMap<Cid, Delegation>,
    ) -> Vec<StoredDelegation> {
        chain
            .iter()
            .filter(|cid| !self.kept.contains(cid))
            .filter_map(|cid| proofs.get(cid))
            .map(stored)
            .collect()
    }

    /// `POST /delegations`: keeps every delegation in `container` for invocations to cite by CID,
    /// or none of them. Each must verify, not have expired, not be revoked, and rest on a subject
    /// this gateway honours (see the module docs); its issuer must stay within
    /// [`MAX_PROOFS_PER_ISSUER`]. Answers with their CIDs.
    pub async fn keep_delegations(&self, container: &[u8]) -> Result<Vec<Cid>, Refusal> {
        let now = unix_now();
        let container = Container::decode(container)?;
        let mut delegations = Vec::with_capacity(container.tokens.len());
        for token in &container.tokens {
            let envelope = Envelope::decode(token).map_err(ValidationError::from)?;
            if envelope.kind != Kind::Delegation {
                return Err(Refusal::malformed(
                    "MalformedContainer",
                    "POST /delegations takes delegations only; send invocations to POST /",
                ));
            }
            let dlg = Delegation::from_envelope(envelope)?;
            if !delegations
                .iter()
                .any(|d: &Delegation| d.cid() == dlg.cid())
            {
                delegations.push(dlg);
            }
        }
        if delegations.is_empty() {
            return Err(Refusal::malformed(
                "MalformedContainer",
                "the container holds no delegation",
            ));
        }
        for dlg in &delegations {
            self.authority.check_delegation(dlg, now)?;
            if let Some(sub) = &dlg.payload.sub
                && !self.policy.honours(sub, &self.did)
            {
                return Err(ValidationError::in_proof(
                    ErrorKind::InvalidSubject,
                    dlg.cid(),
                    format!("this gateway does not act for the subject {sub}"),
                )
                .into());
            }
        }
        self.check_rooted(&delegations, now).await?;
        self.check_issuer_caps(&delegations).await?;

        let cids: Vec<Cid> = delegations.iter().map(Delegation::cid).collect();
        let commit = Commit::default().with_proofs(
            delegations.iter().map(stored).collect(),
            MAX_PROOFS_PER_ISSUER,
        );
        self.ledger.commit(commit, cids[0]).await?;
        // The cap is enforced in the commit too: an upload racing another for an issuer's last
        // slots may find some of its delegations left out.
        let usable_from = now.saturating_sub(self.authority.leeway());
        let kept: HashSet<Cid> = self
            .ledger
            .store()
            .proofs(&cids, usable_from)
            .await?
            .into_iter()
            .map(|k| k.cid)
            .collect();
        if let Some(left_out) = cids.iter().find(|c| !kept.contains(c)) {
            // Revoked on another replica since this one loaded its revocations: kept, but never
            // returned (and purged by the sweep).
            if self.ledger.store().is_revoked(*left_out).await? {
                return Err(ValidationError::in_proof(
                    ErrorKind::Revoked,
                    *left_out,
                    format!("delegation {left_out} has been revoked"),
                )
                .into());
            }
            return Err(too_many(left_out, "its issuer"));
        }
        self.kept.mark(cids.iter().copied());
        Ok(cids)
    }

    /// Every delegation of an upload rests on an honoured subject: it is a root issued by its
    /// (honoured, already checked) subject, or its issuer is the audience of a delegation that
    /// does — kept already, or in the upload. Iterated to a fixed point, not recursed.
    async fn check_rooted(&self, delegations: &[Delegation], now: i64) -> Result<(), Refusal> {
        let usable_from = now.saturating_sub(self.authority.leeway());
        let mut rooted: Vec<bool> = Vec::with_capacity(delegations.len());
        for dlg in delegations {
            let d = &dlg.payload;
            let root = d.sub.as_deref() == Some(d.iss.as_str());
            rooted.push(
                root || self
                    .ledger
                    .store()
                    .delegated_to(&d.iss, usable_from)
                    .await?,
            );
        }
        loop {
            let audiences: HashSet<&str> = delegations
                .iter()
                .zip(&rooted)
                .filter(|(_, r)| **r)
                .map(|(d, _)| d.payload.aud.as_str())
                .collect();
            let mut grew = false;
            for (dlg, r) in delegations.iter().zip(rooted.iter_mut()) {
                if !*r && audiences.contains(dlg.payload.iss.as_str()) {
                    *r = true;
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        match delegations.iter().zip(&rooted).find(|(_, r)| !**r) {
            None => Ok(()),
            Some((dlg, _)) => Err(ValidationError::in_proof(
                ErrorKind::InvalidClaim,
                dlg.cid(),
                format!(
                    "nothing kept or uploaded delegates to its issuer {}; upload the chain from \
                     its root",
                    dlg.payload.iss
                ),
            )
            .into()),
        }
    }

    /// No issuer would have more than [`MAX_PROOFS_PER_ISSUER`] delegations kept.
    async fn check_issuer_caps(&self, delegations: &[Delegation]) -> Result<(), Refusal> {
        let cids: Vec<Cid> = delegations.iter().map(Delegation::cid).collect();
        // Delegations kept already take no new slot (expired ones still count until purged).
        let known: HashSet<Cid> = self
            .ledger
            .store()
            .proofs(&cids, i64::MIN)
            .await?
            .into_iter()
            .map(|k| k.cid)
            .collect();
        let mut new_by_issuer: HashMap<&str, (u64, Cid)> = HashMap::new();
        for dlg in delegations.iter().filter(|d| !known.contains(&d.cid())) {
            new_by_issuer
                .entry(dlg.payload.iss.as_str())
                .or_insert((0, dlg.cid()))
                .0 += 1;
        }
        for (issuer, (new, first)) in new_by_issuer {
            let kept = self.ledger.store().proofs_of(issuer).await?;
            if kept.saturating_add(new) > MAX_PROOFS_PER_ISSUER as u64 {
                return Err(too_many(&first, issuer));
            }
        }
        Ok(())
    }
}

/// The refusal of a delegation past its issuer's cap.
fn too_many(cid: &Cid, issuer: &str) -> Refusal {
    Refusal::malformed(
        "TooManyDelegations",
        format!(
            "delegation {cid}: {issuer} would have more than {MAX_PROOFS_PER_ISSUER} delegations \
             kept; at most {MAX_PROOFS_PER_ISSUER}"
        ),
    )
}
