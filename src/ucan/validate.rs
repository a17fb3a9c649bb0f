//! Proof-chain validation: the checklist that decides whether an invocation is backed by delegated
//! authority at a given time. Each check is tagged with its step so the code can be read against the
//! invocation and delegation specs line by line.
//!
//! 1. Invocation
//!    a. its signature verifies against `iss`
//!    b. it has not expired (`exp`)
//!    c. it is not before its `nbf`, if it carries one (not an invocation field in the spec, but
//!    honoured rather than ignored)
//!    d. with no proofs, it is self-issued (`iss == sub`), else nothing establishes the subject's
//!    authority (`InvalidClaim`)
//! 2. Proofs
//!    a. every CID in `prf` is among the supplied delegations (else `UnavailableProof`)
//!    b. the list is root first; a leaf-first list (as go-ucan emits) is detected and reversed
//!    c. there are at most [`MAX_CHAIN`] of them
//! 3. Each delegation, root to leaf
//!    a. its signature verifies against its `iss`
//!    b. it is within its time bounds (`nbf`, `exp`), with the configured leeway
//!    c. it is not revoked
//!    d. the root is issued by its subject and is not a powerline (else `InvalidClaim`); every
//!    subject is `null` (powerline, below the root) or the invocation's subject (else `InvalidSubject`)
//!    e. principal alignment: each `aud` is the next `iss`, the last `aud` is the invoker
//!    f. its command proves the invoked command and is proven by the command of the delegation before
//!    it (restated or attenuated, never widened)
//!    g. its policy holds on the invocation's `args`
//!
//! [`check_chain`] runs steps 1 to 3f and returns a [`Chain`] whose [`Chain::check_policies`] is 3g, so
//! a caller whose arguments are not known yet (promises) checks the chain once and the policies later.
//!
//! Structural checks are cheap and signatures are not, but a token whose signature fails is reported as
//! `InvalidSignature` first: an error about the contents of a forged token would be misleading.
//!
//! Whether the invocation is addressed to *this* executor is the caller's decision ([`Authorized`]
//! carries the audience); the chain itself does not depend on who checks it.

use std::collections::HashMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::PublicKey;
use crate::ucan::command::Command;
use crate::ucan::delegation::Delegation;
use crate::ucan::envelope::{Envelope, EnvelopeError};
use crate::ucan::error::{ErrorKind, ValidationError};
use crate::ucan::invocation::Invocation;

/// The longest delegation chain accepted. Real chains are a handful long; the cap bounds the work an
/// unauthenticated request can cause.
pub const MAX_CHAIN: usize = 32;

/// The clock-skew allowance recommended by the spec (±60 s).
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// When and how strictly to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The time of validation, Unix seconds.
    pub now: i64,
    /// Allowed clock skew in seconds for `nbf` and `exp` (0 in strict mode).
    pub leeway: i64,
}

impl Options {
    /// Validation at `now` with the default leeway.
    pub fn at(now: i64) -> Self {
        Options {
            now,
            leeway: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Validation at `now` with no leeway at all.
    pub fn strict(now: i64) -> Self {
        Options { now, leeway: 0 }
    }

    /// Validation at the current system time with the default leeway.
    pub fn now() -> Self {
        Options::at(unix_now())
    }
}

/// The current Unix time in seconds (0 if the clock is before the epoch).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Something that knows which delegations have been revoked.
pub trait Revocations {
    /// Whether the delegation with this CID has been revoked.
    fn is_revoked(&self, delegation: &Cid) -> bool;
}

/// No revocations known.
pub struct NoRevocations;

impl Revocations for NoRevocations {
    fn is_revoked(&self, _: &Cid) -> bool {
        false
    }
}

impl Revocations for std::collections::HashSet<Cid> {
    fn is_revoked(&self, delegation: &Cid) -> bool {
        self.contains(delegation)
    }
}

/// Something that may already know a token's signature to be valid (a token's CID binds its bytes, so a
/// verified signature stays verified). The gateway uses this to skip re-verifying popular delegations.
pub trait SignatureCache {
    /// Whether the token with this CID was verified before.
    fn is_verified(&self, token: &Cid) -> bool;
    /// Records that the token with this CID verified.
    fn mark_verified(&self, token: &Cid);
    /// The key of `did` (a principal, no fragment) if it was parsed before. Invocations are never
    /// cached, but their issuers repeat: parsing a `did:key` decompresses a curve point and
    /// re-encodes it (7 µs for Ed25519, a sixth of a signature check).
    fn issuer_key(&self, _did: &str) -> Option<PublicKey> {
        None
    }
    /// Records the key `did` parsed to.
    fn keep_issuer_key(&self, _did: &str, _key: &PublicKey) {}
}

/// Verifies every signature every time.
pub struct NoCache;

impl SignatureCache for NoCache {
    fn is_verified(&self, _: &Cid) -> bool {
        false
    }
    fn mark_verified(&self, _: &Cid) {}
}

/// The outcome of a successful check: who may do what, on whose behalf, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorized {
    /// The invocation's CID.
    pub invocation: Cid,
    /// The invoker (`iss`).
    pub invoker: String,
    /// The subject whose authority is exercised (`sub`).
    pub subject: String,
    /// The executor addressed (`aud`, or `sub` when absent).
    pub audience: String,
    /// The command granted and invoked.
    pub command: Command,
    /// The invocation's arguments as checked against every policy in the chain: the signed ones, or
    /// with promises resolved when validated by [`validate_resolved`].
    pub args: std::collections::BTreeMap<String, Ipld>,
    /// The task id of the invocation as signed (`{sub, cmd, args, nonce}`, promises unresolved).
    pub task: Cid,
    /// The delegation chain, root first.
    pub chain: Vec<Cid>,
    /// The latest `nbf` in the chain, if any.
    pub not_before: Option<i64>,
    /// The earliest expiry of the invocation and its chain (`None`: nothing in it expires).
    pub expires: Option<i64>,
}

impl Authorized {
    /// A JSON summary for people and scripts (`ucan-gateway verify`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "invocation": self.invocation.to_string(),
            "invoker": self.invoker,
            "subject": self.subject,
            "audience": self.audience,
            "command": self.command.as_str(),
            "chain": self.chain.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "not_before": self.not_before,
            "expires": self.expires,
        })
    }
}

/// Strips a DID URL fragment: principal alignment must ignore fragments (delegation spec).
fn principal(did: &str) -> &str {
    did.split_once('#').map_or(did, |(base, _)| base)
}

fn same_principal(a: &str, b: &str) -> bool {
    principal(a) == principal(b)
}

/// Verifies the signature of a delegation (`proof`, its CID) or, with `None`, of the invocation.
/// Only delegations' verified signatures are remembered: an invocation is used once (a second use
/// is a replay), so caching it would only push the delegations that are reused out of the cache.
/// Issuers' keys are remembered for both.
fn verify_signature(
    envelope: &Envelope,
    issuer: &str,
    cache: &dyn SignatureCache,
    proof: Option<Cid>,
) -> Result<(), ValidationError> {
    if proof.is_some() && cache.is_verified(&envelope.cid) {
        return Ok(());
    }
    let fail = |message: String| match proof {
        Some(cid) => ValidationError::in_proof(ErrorKind::InvalidSignature, cid, message),
        None => ValidationError::new(ErrorKind::InvalidSignature, message),
    };
    let did = principal(issuer);
    let key = match cache.issuer_key(did) {
        Some(key) => key,
        None => {
            let key = PublicKey::from_did(did).map_err(|e| fail(format!("issuer key: {e}")))?;
            cache.keep_issuer_key(did, &key);
            key
        }
    };
    envelope.verify(&key).map_err(|e| match e {
        EnvelopeError::InvalidSignature => fail(format!("signature by {issuer} does not verify")),
        other => fail(other.to_string()),
    })?;
    if proof.is_some() {
        cache.mark_verified(&envelope.cid);
    }
    Ok(())
}

/// Validates `invocation` with the delegations in `proofs` (looked up by CID; extra ones are ignored):
/// [`check_chain`], then the chain's policies on the signed arguments.
pub fn validate(
    invocation: &Invocation,
    proofs: &HashMap<Cid, Delegation>,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<Authorized, ValidationError> {
    let chain = check_chain(invocation, proofs, opts, revocations, cache)?;
    chain.check_policies(&invocation.payload.args)?;
    Ok(chain.authorized(&invocation.payload.args))
}

/// A chain that passed every check but its policies (steps 1, 2 and 3a–3f). Policies (3g) are checked
/// separately because the values they apply to may not be known yet: an argument awaiting a promise
/// is checked on the awaited value (promise spec), so the gateway checks the chain once, resolves the
/// promises, then checks the policies on the result.
#[derive(Debug)]
pub struct Chain<'a> {
    invocation: &'a Invocation,
    /// Root first.
    delegations: Vec<&'a Delegation>,
    not_before: Option<i64>,
    expires: Option<i64>,
}

impl Chain<'_> {
    /// 3g: every delegation's policy holds on `args` (the signed arguments, or with promises
    /// resolved).
    pub fn check_policies(
        &self,
        args: &std::collections::BTreeMap<String, Ipld>,
    ) -> Result<(), ValidationError> {
        if self.delegations.iter().all(|d| d.payload.pol.is_empty()) {
            return Ok(());
        }
        // Policies select into `args` as one IPLD value; build it once for the whole chain.
        let args = Ipld::Map(args.clone());
        for dlg in &self.delegations {
            if let Err(mismatch) = dlg.payload.pol.check(&args) {
                // A statement too costly to decide is a limit, not a refusal of authority.
                let message = if mismatch.exhausted {
                    format!("arguments: policy {mismatch}")
                } else {
                    format!("arguments fail policy {mismatch}")
                };
                return Err(ValidationError::in_proof(
                    mismatch.kind(),
                    dlg.cid(),
                    message,
                ));
            }
        }
        Ok(())
    }

    /// What the chain authorises, with `args` as the arguments the task runs on. Call only after
    /// [`Chain::check_policies`] passed on the same `args`, or when nothing runs on its strength
    /// (a promise that resolved to the other branch).
    pub fn authorized(&self, args: &std::collections::BTreeMap<String, Ipld>) -> Authorized {
        let inv = &self.invocation.payload;
        Authorized {
            invocation: self.invocation.cid(),
            invoker: inv.iss.clone(),
            subject: inv.sub.clone(),
            audience: inv.executor().to_owned(),
            command: inv.cmd.clone(),
            args: args.clone(),
            task: inv.task_id(),
            chain: self.delegations.iter().map(|d| d.cid()).collect(),
            not_before: self.not_before,
            expires: self.expires,
        }
    }
}

/// Steps 1, 2 and 3a–3f of the checklist: everything but the policies, on the token as signed.
pub fn check_chain<'a>(
    invocation: &'a Invocation,
    proofs: &'a HashMap<Cid, Delegation>,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<Chain<'a>, ValidationError> {
    check_invocation(invocation, opts, cache)?;
    let delegations = gather(invocation, proofs)?;
    let inv = &invocation.payload;
    let mut chain = Chain {
        invocation,
        delegations: Vec::new(),
        not_before: inv.nbf,
        expires: inv.exp,
    };
    for (i, dlg) in delegations.iter().enumerate() {
        let link = Link {
            dlg,
            index: i,
            previous: i.checked_sub(1).map(|p| delegations[p]),
            next_issuer: delegations
                .get(i + 1)
                .map_or(inv.iss.as_str(), |next| next.payload.iss.as_str()),
            is_last: i + 1 == delegations.len(),
        };
        check_delegation(&link, inv, opts, revocations, cache)?;
        chain.not_before = later(chain.not_before, dlg.payload.nbf);
        chain.expires = earlier(chain.expires, dlg.payload.exp);
    }
    chain.delegations = delegations;
    Ok(chain)
}

/// One delegation on its own, as a gateway checks it before keeping it for chains to come: its
/// signature (3a), that it has not expired (the `exp` half of 3b: one not valid yet may be kept for
/// later), and that it is not revoked (3c). Its place in a chain is checked when a chain cites it.
pub fn check_delegation_alone(
    dlg: &Delegation,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<(), ValidationError> {
    let d = &dlg.payload;
    let cid = dlg.cid();
    // 3a
    verify_signature(&dlg.envelope, &d.iss, cache, Some(cid))?;
    // 3b
    if let Some(exp) = d.exp
        && opts.now > exp.saturating_add(opts.leeway)
    {
        return Err(ValidationError::in_proof(
            ErrorKind::Expired,
            cid,
            format!("delegation expired at {exp}"),
        ));
    }
    // 3c
    if revocations.is_revoked(&cid) {
        return Err(ValidationError::in_proof(
            ErrorKind::Revoked,
            cid,
            format!("delegation {cid} has been revoked"),
        ));
    }
    Ok(())
}

/// Step 1: the invocation on its own.
fn check_invocation(
    invocation: &Invocation,
    opts: Options,
    cache: &dyn SignatureCache,
) -> Result<(), ValidationError> {
    let inv = &invocation.payload;
    // 1a. Always verified (see `verify_signature`).
    verify_signature(&invocation.envelope, &inv.iss, cache, None)?;
    // 1b
    if let Some(exp) = inv.exp
        && opts.now > exp.saturating_add(opts.leeway)
    {
        return Err(ValidationError::new(
            ErrorKind::Expired,
            format!("invocation expired at {exp}"),
        ));
    }
    // 1c: the invocation spec defines no `nbf`, but an invoker who wrote one meant it; running the
    // task early would do what it did not ask for.
    if let Some(nbf) = inv.nbf
        && opts.now < nbf.saturating_sub(opts.leeway)
    {
        return Err(ValidationError::new(
            ErrorKind::TooEarly,
            format!("invocation is not valid before {nbf}"),
        ));
    }
    // 1d
    if inv.prf.is_empty() && !same_principal(&inv.iss, &inv.sub) {
        return Err(ValidationError::new(
            ErrorKind::InvalidClaim,
            format!(
                "no proofs, and the invoker {} is not the subject {}: nothing establishes the \
                 subject's authority",
                inv.iss, inv.sub
            ),
        ));
    }
    Ok(())
}

/// Step 2: the delegations `prf` names, root first.
fn gather<'a>(
    invocation: &Invocation,
    proofs: &'a HashMap<Cid, Delegation>,
) -> Result<Vec<&'a Delegation>, ValidationError> {
    let inv = &invocation.payload;
    // 2c
    if inv.prf.len() > MAX_CHAIN {
        return Err(ValidationError::new(
            ErrorKind::ChainTooLong,
            format!("{} proofs; at most {MAX_CHAIN}", inv.prf.len()),
        ));
    }
    // 2a
    let mut chain: Vec<&Delegation> = Vec::with_capacity(inv.prf.len());
    for cid in &inv.prf {
        let dlg = proofs.get(cid).ok_or_else(|| {
            ValidationError::in_proof(
                ErrorKind::UnavailableProof,
                *cid,
                format!("proof {cid} was not supplied"),
            )
        })?;
        chain.push(dlg);
    }
    // 2b: root first means the last delegation names the invoker as audience. If instead the first
    // does (and the last does not), the list is leaf first.
    if chain.len() > 1
        && !same_principal(&chain[chain.len() - 1].payload.aud, &inv.iss)
        && same_principal(&chain[0].payload.aud, &inv.iss)
    {
        chain.reverse();
    }
    Ok(chain)
}

/// One delegation in its place in the chain.
struct Link<'a> {
    dlg: &'a Delegation,
    /// 0 for the root.
    index: usize,
    /// The delegation before it (towards the root), which it must restate or attenuate.
    previous: Option<&'a Delegation>,
    /// Who its audience must be: the next delegation's issuer, or the invoker.
    next_issuer: &'a str,
    is_last: bool,
}

/// Step 3a–3f for one delegation.
fn check_delegation(
    link: &Link<'_>,
    inv: &crate::ucan::invocation::InvocationPayload,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<(), ValidationError> {
    let d = &link.dlg.payload;
    let cid = link.dlg.cid();
    let err = |kind, message: String| ValidationError::in_proof(kind, cid, message);

    // 3a
    verify_signature(&link.dlg.envelope, &d.iss, cache, Some(cid))?;
    // 3b
    if let Some(nbf) = d.nbf
        && opts.now < nbf.saturating_sub(opts.leeway)
    {
        return Err(err(
            ErrorKind::TooEarly,
            format!("delegation is not valid before {nbf}"),
        ));
    }
    if let Some(exp) = d.exp
        && opts.now > exp.saturating_add(opts.leeway)
    {
        return Err(err(
            ErrorKind::Expired,
            format!("delegation expired at {exp}"),
        ));
    }
    // 3c
    if revocations.is_revoked(&cid) {
        return Err(err(
            ErrorKind::Revoked,
            format!("delegation {cid} has been revoked"),
        ));
    }
    // 3d
    check_subject(link, inv).map_err(|(kind, message)| err(kind, message))?;
    // 3e
    if !same_principal(&d.aud, link.next_issuer) {
        let next = if link.is_last {
            "invoker"
        } else {
            "next delegation's issuer"
        };
        return Err(err(
            ErrorKind::InvalidAudience,
            format!(
                "delegation audience {} is not the {next} {}",
                d.aud, link.next_issuer
            ),
        ));
    }
    // 3f: it covers the invoked command, and restates or attenuates the delegation it rests on
    // (delegation spec, "Attenuation"): a link may not widen what it was given, even where the
    // invoked command is within both.
    if let Some(previous) = link.previous
        && !previous.payload.cmd.proves(&d.cmd)
    {
        return Err(err(
            ErrorKind::InvalidClaim,
            format!(
                "delegated command {} is broader than {} delegated to its issuer",
                d.cmd, previous.payload.cmd
            ),
        ));
    }
    if !d.cmd.proves(&inv.cmd) {
        return Err(err(
            ErrorKind::InvalidClaim,
            format!("delegated command {} does not cover {}", d.cmd, inv.cmd),
        ));
    }
    Ok(())
}

/// Step 3d. The root must establish the subject's authority (issued by its subject, so not a
/// powerline): a chain that does not is an `InvalidClaim`, as the spec's fixtures name it. Every
/// link must then be about the invocation's subject (or a powerline, which takes it from the link
/// before).
fn check_subject(
    link: &Link<'_>,
    inv: &crate::ucan::invocation::InvocationPayload,
) -> Result<(), (ErrorKind, String)> {
    let d = &link.dlg.payload;
    match (&d.sub, link.index) {
        (None, 0) => Err((
            ErrorKind::InvalidClaim,
            "the root delegation is a powerline (sub: null); a chain must start at its subject"
                .into(),
        )),
        (Some(sub), 0) if !same_principal(sub, &d.iss) => Err((
            ErrorKind::InvalidClaim,
            format!(
                "the root delegation is issued by {}, not by its subject {sub}",
                d.iss
            ),
        )),
        (Some(sub), 0) if !same_principal(sub, &inv.sub) => Err((
            ErrorKind::InvalidSubject,
            format!(
                "the chain is about {sub}, but the invocation's subject is {}",
                inv.sub
            ),
        )),
        (Some(sub), _) if !same_principal(sub, &inv.sub) => Err((
            ErrorKind::InvalidSubject,
            format!(
                "delegation subject {sub} is not the invocation's subject {}",
                inv.sub
            ),
        )),
        _ => Ok(()),
    }
}

/// The later of two optional times (`None`: no bound).
fn later(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The earlier of two optional times (`None`: no bound).
fn earlier(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
