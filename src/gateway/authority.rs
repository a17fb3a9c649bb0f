//! Authority: what the gateway knows about who may do what. It owns the set of revoked delegations,
//! the cache of signatures already verified, and the clock leeway, and checks chains in either wire
//! format's rules against them. It does no I/O: revocations are persisted by the ledger, and this set
//! is loaded from it at startup and grown as revocations are accepted, here or by any process sharing
//! the store.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use cid::Cid;

use super::Refusal;
use crate::did::PublicKey;
use crate::ucan::validate::{self, Authorized, Chain, Options, Revocations, SignatureCache};
use crate::ucan::{Delegation, Invocation, ValidationError};
use crate::ucanto::capability::{self, Checked, Context, Denied};
use crate::ucanto::token::{TokenError, Ucan};

/// The revocations, the verified-signature cache and the leeway every check uses.
pub(crate) struct Authority {
    /// The gateway's DID: the audience ucanto invocations must name.
    did: String,
    leeway: i64,
    revoked: RevokedSet,
    /// The store position of the last revocation learnt from the store.
    position: AtomicU64,
    verified: VerifiedCache,
}

impl Authority {
    /// Authority for the gateway `did`, allowing `leeway` seconds of clock skew, knowing of no
    /// revocation yet (see [`Authority::learn`]).
    pub(crate) fn new(did: String, leeway: i64) -> Self {
        Authority {
            did,
            leeway,
            revoked: RevokedSet(RwLock::new(HashSet::new())),
            position: AtomicU64::new(0),
            verified: VerifiedCache::default(),
        }
    }

    /// Validation at `now` with this gateway's leeway.
    pub(crate) fn options(&self, now: i64) -> Options {
        Options {
            now,
            leeway: self.leeway,
        }
    }

    /// How long a replay key must be kept for a token expiring at `expires`: until it can no longer
    /// validate (its expiry plus the leeway); forever when it never expires.
    pub(crate) fn seen_until(&self, expires: Option<i64>) -> Option<i64> {
        expires.map(|exp| exp.saturating_add(self.leeway))
    }

    /// A UCAN 1.0 chain checked at `now`, all but its policies (which the caller checks on the
    /// arguments the task will run with).
    pub(crate) fn check_chain<'a>(
        &self,
        invocation: &'a Invocation,
        proofs: &'a HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<Chain<'a>, Refusal> {
        Ok(validate::check_chain(
            invocation,
            proofs,
            self.options(now),
            &self.revoked,
            &self.verified,
        )?)
    }

    /// One delegation checked on its own at `now` (signature, expiry, revocation), before it is
    /// kept for chains to come.
    pub(crate) fn check_delegation(&self, dlg: &Delegation, now: i64) -> Result<(), Refusal> {
        Ok(validate::check_delegation_alone(
            dlg,
            self.options(now),
            &self.revoked,
            &self.verified,
        )?)
    }

    /// A UCAN 1.0 invocation validated in full (an effect the gateway is about to issue).
    pub(crate) fn validate(
        &self,
        invocation: &Invocation,
        proofs: &HashMap<Cid, Delegation>,
        now: i64,
    ) -> Result<Authorized, ValidationError> {
        validate::validate(
            invocation,
            proofs,
            self.options(now),
            &self.revoked,
            &self.verified,
        )
    }

    /// A ucanto invocation checked by ucanto's rules at `now`; `trusted` says which issuers may root
    /// a chain on resources they do not own (subjects the operator honours).
    pub(crate) fn check_ucanto(
        &self,
        invocation: &Ucan,
        tokens: &HashMap<Cid, Result<Ucan, TokenError>>,
        now: i64,
        trusted: &dyn Fn(&str) -> bool,
    ) -> Result<Checked, Denied> {
        let cx = Context {
            audience: &self.did,
            now,
            leeway: self.leeway,
            revoked: &self.revoked,
            verified: &self.verified,
            trusted,
        };
        capability::check(invocation, tokens, &cx)
    }

    /// Honours a revocation from now on (it is already durable in the store).
    pub(crate) fn revoke(&self, delegation: Cid) {
        if let Ok(mut set) = self.revoked.0.write() {
            set.insert(delegation);
        }
    }

    /// Honours revocations read from the store with their positions (those recorded by any process
    /// sharing it), remembering the last position for [`Authority::position`].
    pub(crate) fn learn(&self, revocations: Vec<(u64, Cid)>) {
        let Some(last) = revocations.iter().map(|(at, _)| *at).max() else {
            return;
        };
        if let Ok(mut set) = self.revoked.0.write() {
            set.extend(revocations.into_iter().map(|(_, cid)| cid));
        }
        self.position.fetch_max(last, Ordering::AcqRel);
    }

    /// The store position after which revocations are still to be learnt.
    pub(crate) fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// The clock leeway in seconds.
    pub(crate) fn leeway(&self) -> i64 {
        self.leeway
    }
}

/// Revoked delegations, loaded from the store at startup and grown as revocations arrive.
struct RevokedSet(RwLock<HashSet<Cid>>);

impl Revocations for RevokedSet {
    fn is_revoked(&self, delegation: &Cid) -> bool {
        // A poisoned lock reads as "revoked": refusing is the safe side.
        self.0
            .read()
            .map(|set| set.contains(delegation))
            .unwrap_or(true)
    }
}

/// Tokens whose signatures already verified, and the keys issuers' DIDs parsed to. A CID binds the
/// token's bytes, so a verified signature stays verified; popular delegations are then checked once,
/// not on every request, and a returning issuer's key is not parsed again. Bounded: when full, each
/// is simply emptied (cheap, and the next requests re-fill it).
#[derive(Default)]
struct VerifiedCache {
    tokens: Mutex<HashSet<Cid>>,
    keys: Mutex<HashMap<String, PublicKey>>,
}

const VERIFIED_CACHE_MAX: usize = 65_536;

/// Issuer keys kept; each entry is a bounded `did:key` string and its parsed key.
const KEY_CACHE_MAX: usize = 4_096;

impl SignatureCache for VerifiedCache {
    fn is_verified(&self, token: &Cid) -> bool {
        self.tokens
            .lock()
            .map(|set| set.contains(token))
            .unwrap_or(false)
    }

    fn mark_verified(&self, token: &Cid) {
        if let Ok(mut set) = self.tokens.lock() {
            if set.len() >= VERIFIED_CACHE_MAX {
                set.clear();
            }
            set.insert(*token);
        }
    }

    fn issuer_key(&self, did: &str) -> Option<PublicKey> {
        self.keys.lock().ok()?.get(did).cloned()
    }

    fn keep_issuer_key(&self, did: &str, key: &PublicKey) {
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= KEY_CACHE_MAX {
                keys.clear();
            }
            keys.insert(did.to_owned(), key.clone());
        }
    }
}
