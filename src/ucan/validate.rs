//! Proof-chain validation: the checklist that decides whether an invocation is backed by delegated
//! authority at a given time. Each check is tagged with its step so the code can be read against the
//! invocation and delegation specs line by line.
//!
//! 1. Invocation
//!    a. its signature verifies against `iss`
//!    b. it has not expired (`exp`)
//!    c. with no proofs, it is self-issued (`iss == sub`)
//! 2. Proofs
//!    a. every CID in `prf` is among the supplied delegations (else `UnavailableProof`)
//!    b. the list is root first; a leaf-first list (as go-ucan emits) is detected and reversed
//!    c. there are at most [`MAX_CHAIN`] of them
//! 3. Each delegation, root to leaf
//!    a. its signature verifies against its `iss`
//!    b. it is within its time bounds (`nbf`, `exp`), with the configured leeway
//!    c. it is not revoked
//!    d. the root is issued by its subject and is not a powerline; every other subject is `null`
//!    (powerline) or the invocation's subject
//!    e. principal alignment: each `aud` is the next `iss`, the last `aud` is the invoker
//!    f. its command proves the invoked command
//!    g. its policy holds on the invocation's `args`
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

fn verify_signature(
    envelope: &Envelope,
    issuer: &str,
    cache: &dyn SignatureCache,
    proof: Option<Cid>,
) -> Result<(), ValidationError> {
    if cache.is_verified(&envelope.cid) {
        return Ok(());
    }
    let fail = |message: String| match proof {
        Some(cid) => ValidationError::in_proof(ErrorKind::InvalidSignature, cid, message),
        None => ValidationError::new(ErrorKind::InvalidSignature, message),
    };
    let key =
        PublicKey::from_did(principal(issuer)).map_err(|e| fail(format!("issuer key: {e}")))?;
    envelope.verify(&key).map_err(|e| match e {
        EnvelopeError::InvalidSignature => fail(format!("signature by {issuer} does not verify")),
        other => fail(other.to_string()),
    })?;
    cache.mark_verified(&envelope.cid);
    Ok(())
}

/// Validates `invocation` with the delegations in `proofs` (looked up by CID; extra ones are ignored).
pub fn validate(
    invocation: &Invocation,
    proofs: &HashMap<Cid, Delegation>,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<Authorized, ValidationError> {
    validate_resolved(
        invocation,
        &invocation.payload.args,
        proofs,
        opts,
        revocations,
        cache,
    )
}

/// Like [`validate`], but checks the chain's policies on `args` instead of the signed arguments:
/// the invocation's arguments with its promises resolved (promise spec). Everything else — the
/// signatures, time bounds, principals and commands — is checked on the token as signed.
pub fn validate_resolved(
    invocation: &Invocation,
    args: &std::collections::BTreeMap<String, Ipld>,
    proofs: &HashMap<Cid, Delegation>,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<Authorized, ValidationError> {
    check(invocation, Some(args), proofs, opts, revocations, cache)
}

/// Every check of [`validate`] except the policies (3g). Only for answering an invocation whose
/// arguments have no value to check yet (a promise that resolved to the other branch), where
/// nothing is run on the strength of the result.
pub fn validate_ignoring_policies(
    invocation: &Invocation,
    proofs: &HashMap<Cid, Delegation>,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<Authorized, ValidationError> {
    check(invocation, None, proofs, opts, revocations, cache)
}

/// The checklist; `args` are what policies are checked on, or `None` to skip 3g.
fn check(
    invocation: &Invocation,
    policy_args: Option<&std::collections::BTreeMap<String, Ipld>>,
    proofs: &HashMap<Cid, Delegation>,
    opts: Options,
    revocations: &dyn Revocations,
    cache: &dyn SignatureCache,
) -> Result<Authorized, ValidationError> {
    let inv = &invocation.payload;
    let args = policy_args.unwrap_or(&inv.args);

    // 1a
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
    // 1c
    if inv.prf.is_empty() {
        if !same_principal(&inv.iss, &inv.sub) {
            return Err(ValidationError::new(
                ErrorKind::InvalidSubject,
                format!(
                    "no proofs, and the invoker {} is not the subject {}",
                    inv.iss, inv.sub
                ),
            ));
        }
        return Ok(authorized(invocation, args, Vec::new(), None, inv.exp));
    }

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
    // 2b: root first means the last delegation names the invoker as audience. If instead the first does
    // (and the last does not), the list is leaf first.
    if chain.len() > 1
        && !same_principal(&chain[chain.len() - 1].payload.aud, &inv.iss)
        && same_principal(&chain[0].payload.aud, &inv.iss)
    {
        chain.reverse();
    }

    // Policies select into `args` as one IPLD value; build it once for the whole chain.
    let checked = args;
    let args = Ipld::Map(args.clone());
    let mut not_before: Option<i64> = None;
    let mut expires = inv.exp;
    for (i, dlg) in chain.iter().enumerate() {
        let d = &dlg.payload;
        let cid = dlg.cid();
        let err = |kind, message: String| ValidationError::in_proof(kind, cid, message);

        // 3a
        verify_signature(&dlg.envelope, &d.iss, cache, Some(cid))?;
        // 3b
        if let Some(nbf) = d.nbf {
            if opts.now < nbf.saturating_sub(opts.leeway) {
                return Err(err(
                    ErrorKind::TooEarly,
                    format!("delegation is not valid before {nbf}"),
                ));
            }
            not_before = Some(not_before.map_or(nbf, |t| t.max(nbf)));
        }
        if let Some(exp) = d.exp {
            if opts.now > exp.saturating_add(opts.leeway) {
                return Err(err(
                    ErrorKind::Expired,
                    format!("delegation expired at {exp}"),
                ));
            }
            expires = Some(expires.map_or(exp, |t| t.min(exp)));
        }
        // 3c
        if revocations.is_revoked(&cid) {
            return Err(err(
                ErrorKind::Revoked,
                format!("delegation {cid} has been revoked"),
            ));
        }
        // 3d
        match (&d.sub, i) {
            (None, 0) => {
                return Err(err(
                    ErrorKind::InvalidSubject,
                    "the root delegation is a powerline (sub: null); a chain must start at its subject".into(),
                ));
            }
            (Some(sub), 0) => {
                if !same_principal(sub, &d.iss) {
                    return Err(err(
                        ErrorKind::InvalidSubject,
                        format!(
                            "the root delegation is issued by {}, not by its subject {sub}",
                            d.iss
                        ),
                    ));
                }
                if !same_principal(sub, &inv.sub) {
                    return Err(err(
                        ErrorKind::InvalidSubject,
                        format!(
                            "the chain is about {sub}, but the invocation's subject is {}",
                            inv.sub
                        ),
                    ));
                }
            }
            (Some(sub), _) => {
                if !same_principal(sub, &inv.sub) {
                    return Err(err(
                        ErrorKind::InvalidSubject,
                        format!(
                            "delegation subject {sub} is not the invocation's subject {}",
                            inv.sub
                        ),
                    ));
                }
            }
            // A powerline below the root takes the subject of the delegation before it.
            (None, _) => {}
        }
        // 3e
        let next_issuer = chain
            .get(i + 1)
            .map_or(inv.iss.as_str(), |next| next.payload.iss.as_str());
        if !same_principal(&d.aud, next_issuer) {
            let next = if i + 1 < chain.len() {
                "next delegation's issuer"
            } else {
                "invoker"
            };
            return Err(err(
                ErrorKind::InvalidAudience,
                format!(
                    "delegation audience {} is not the {next} {next_issuer}",
                    d.aud
                ),
            ));
        }
        // 3f
        if !d.cmd.proves(&inv.cmd) {
            return Err(err(
                ErrorKind::InvalidClaim,
                format!("delegated command {} does not cover {}", d.cmd, inv.cmd),
            ));
        }
        // 3g
        if policy_args.is_some()
            && let Err(mismatch) = d.pol.check(&args)
        {
            return Err(err(
                ErrorKind::MatchError,
                format!(
                    "arguments fail policy statement {}: {}",
                    mismatch.index, mismatch.statement
                ),
            ));
        }
    }

    let chain = chain.iter().map(|d| d.cid()).collect();
    Ok(authorized(invocation, checked, chain, not_before, expires))
}

fn authorized(
    invocation: &Invocation,
    args: &std::collections::BTreeMap<String, Ipld>,
    chain: Vec<Cid>,
    not_before: Option<i64>,
    expires: Option<i64>,
) -> Authorized {
    let inv = &invocation.payload;
    Authorized {
        invocation: invocation.cid(),
        invoker: inv.iss.clone(),
        subject: inv.sub.clone(),
        audience: inv.executor().to_owned(),
        command: inv.cmd.clone(),
        args: args.clone(),
        task: inv.task_id(),
        chain,
        not_before,
        expires,
    }
}
