//! ucanto authority: does a chain of dag-ucan delegations back an invocation's one capability?
//!
//! The checklist, tagged in the code:
//! 1. Invocation
//!    a. it carries exactly one capability (as `@ucanto/server` demands)
//!    b. it is addressed to this gateway (`aud`)
//!    c. its signature verifies against `iss`
//!    d. it is within its time bounds (`nbf`, `exp`; `exp: null` never expires)
//!    (c and d fail as `Unauthorized`, as in `@ucanto/validator`, which checks the invocation like a proof)
//!    e. its capability is concrete: `with` is a URI without a wildcard, `can` has none either
//!    f. self-issued: authorised with no proofs when `iss` = `with`, or when `iss` is trusted (below)
//! 2. Each proof on a path from the invocation towards the root
//!    a. it is among the blocks received and decodes
//!    b. it is addressed to the issuer of the token that cites it
//!    c. its signature verifies; d. it is within its time bounds; e. it is not revoked, and it is not
//!    an effect this gateway issued (see [`EFFECT_FACT`])
//!    f. one of its capabilities derives the claim (`@ucanto/validator`'s default rule):
//!    `with` equal, or the delegated `with` ends in `*` and is a prefix (`ucan:*`: any resource);
//!    `can` equal, `*`, or `ns/*` covering `ns/…`; every delegated `nb` field equal in the claim
//!    g. its issuer owns the resource (`iss` = `with`) or is trusted: the root; otherwise continue
//!    with its proofs
//! 3. No root found: `Unauthorized`, one line per failed proof (and, for a `with` that is not a DID,
//!    a line saying only a trusted issuer can grant it)
//!
//! Trusted issuers are the subjects the operator honours ([`Context::trusted`]), as a ucanto service's
//! `canIssue` hook lets its own DID issue capabilities on resources it manages: a token they issue
//! needs no proof that they own `with`, which may then be any URI (`https://…`, `mailto:…`), not only
//! a DID. Such a chain rests on the trusted issuer's authority, so that issuer, not `with`, becomes
//! the mapped subject ([`Checked::subject`]): a trusted issuer can never act in the name of another
//! DID. The search ends at the first link (the invocation first) whose issuer is the owner or
//! trusted, as `@ucanto/validator` stops at the first issuer `canIssue` accepts. An effect the
//! gateway signed is never trusted authority, as it is never a delegation (2e).
//!
//! Every link is checked against the invocation's own capability rather than against the capability
//! the next link delegated. That is sound (each issuer is shown to hold what was invoked) and gives
//! the UCAN 1.0 reading, where every policy on the chain must hold on the arguments; it accepts one
//! chain `@ucanto/validator` refuses: a middle link that drops a caveat its parent imposed, when the
//! invocation still satisfies that caveat. The search is a bounded loop, never recursion.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::token::{Capability, TokenError, Ucan};
use crate::ucan::validate::{MAX_CHAIN, Revocations, SignatureCache};

/// The fact key marking a dag-ucan token as an effect issued by the gateway (its value links the
/// receipt that asked for it). dag-ucan does not tell invocations from delegations, so without it a
/// gateway-signed effect `{with: <gateway DID>, aud: X}` would serve X as a root delegation of the
/// gateway's own authority; tokens the gateway signs with this fact are never accepted as proofs.
pub const EFFECT_FACT: &str = "gateway/effect-of";

/// Most proof examinations in one search: bounds the work (signature checks above all) a request
/// with a wide, shared proof DAG can cause. Real chains take a handful.
pub const MAX_STEPS: usize = 256;

/// Why an invocation is refused, named as `@ucanto/server` and `@ucanto/validator` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// `InvocationCapabilityError`, `InvalidAudience`, `MalformedCapability` or `Unauthorized`
    /// (bad signatures and time bounds, the invocation's included, are lines of `Unauthorized`).
    pub name: &'static str,
    /// For people: for `Unauthorized`, one line per failed proof as `@ucanto/validator` lists them.
    pub message: String,
}

fn denied(name: &'static str, message: impl Into<String>) -> Denied {
    Denied {
        name,
        message: message.into(),
    }
}

/// When and for whom to check.
pub struct Context<'a> {
    /// This gateway's DID: the audience every invocation must name.
    pub audience: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// Allowed clock skew for `nbf` and `exp`.
    pub leeway: i64,
    /// Revoked delegations.
    pub revoked: &'a dyn Revocations,
    /// Signatures already verified.
    pub verified: &'a dyn SignatureCache,
    /// Whether a DID is a trusted issuer: a subject the operator honours, whose delegations and
    /// invocations need no proof that it owns the resource.
    pub trusted: &'a dyn Fn(&str) -> bool,
}

/// What a valid chain established.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The invoked capability.
    pub capability: Capability,
    /// Whose authority the chain rests on, the mapped `sub`: `with` when the root is issued by the
    /// resource owner, otherwise the trusted issuer of the root (or of the invocation itself).
    pub subject: String,
    /// Proofs used, root first.
    pub chain: Vec<Cid>,
    /// The latest `nbf` on the path.
    pub not_before: Option<i64>,
    /// The earliest `exp` on the path, the invocation's included.
    pub expires: Option<i64>,
}

/// One place in the search: the token whose proofs are examined next, and what the path so far gives.
struct Step<'a> {
    holder: &'a Ucan,
    path: Vec<Cid>,
    not_before: Option<i64>,
    expires: Option<i64>,
}

/// Checks `invocation` against the decoded `proofs` (CID → token, or why it did not decode).
pub fn check(
    invocation: &Ucan,
    proofs: &HashMap<Cid, Result<Ucan, TokenError>>,
    cx: &Context<'_>,
) -> Result<Checked, Denied> {
    let claim = check_invocation(invocation, cx)?;
    // 1f
    let gateway_effect = invocation.iss == cx.audience && is_effect(invocation);
    if let Some(subject) = root_subject(invocation, claim, cx, gateway_effect) {
        return Ok(Checked {
            capability: claim.clone(),
            subject,
            chain: Vec::new(),
            not_before: invocation.nbf,
            expires: invocation.exp,
        });
    }
    Search::new(claim, proofs, cx).run(invocation)
}

/// 1a–1e: the invocation's own checks; gives its one capability.
fn check_invocation<'u>(invocation: &'u Ucan, cx: &Context<'_>) -> Result<&'u Capability, Denied> {
    // 1a
    let [claim] = invocation.att.as_slice() else {
        return Err(denied(
            "InvocationCapabilityError",
            format!(
                "Invocation is required to have a single capability, it has {}",
                invocation.att.len()
            ),
        ));
    };
    // 1b
    if invocation.aud != cx.audience {
        return Err(denied(
            "InvalidAudience",
            format!("Expected {} instead got {}", cx.audience, invocation.aud),
        ));
    }
    // 1c, 1d: @ucanto/validator checks the invocation as the first "proof" of its own claim, so
    // these failures are reported the same way, inside `Unauthorized`.
    // Never cached: an invocation is used once, and would push reused delegations out of the cache.
    if let Err(e) = verify_invocation(invocation, cx) {
        let line = format!(
            "Proof {} does not have a valid signature: {e}",
            invocation.cid
        );
        return Err(unauthorized(claim, &[line]));
    }
    time_bounds(invocation, cx).map_err(|d| unauthorized(claim, &[d.message]))?;
    // 1e
    concrete(claim)?;
    Ok(claim)
}

/// 1e: the invoked capability names one resource (a URI without a wildcard) and one ability.
fn concrete(claim: &Capability) -> Result<(), Denied> {
    if !is_uri(&claim.with) {
        return Err(denied(
            "MalformedCapability",
            format!("the resource {} is not a URI", show_str(&claim.with)),
        ));
    }
    if claim.with.ends_with('*') {
        return Err(denied(
            "MalformedCapability",
            format!("the resource {} is not concrete", show_str(&claim.with)),
        ));
    }
    if claim.can.contains('*') {
        return Err(denied(
            "MalformedCapability",
            format!("the ability {} is not concrete", claim.can),
        ));
    }
    Ok(())
}

/// 2 and 3: the search from the invocation towards a root, with what it has learnt so far.
struct Search<'a> {
    claim: &'a Capability,
    proofs: &'a HashMap<Cid, Result<Ucan, TokenError>>,
    cx: &'a Context<'a>,
    /// One line per failed proof, for `Unauthorized`.
    errors: Vec<String>,
    /// Proof examinations so far, bounded by [`MAX_STEPS`].
    steps: usize,
    /// Valid signatures are remembered by the cache; invalid ones here, so a bad token cited from
    /// many places costs one check.
    forged: std::collections::HashSet<Cid>,
}

impl<'a> Search<'a> {
    fn new(
        claim: &'a Capability,
        proofs: &'a HashMap<Cid, Result<Ucan, TokenError>>,
        cx: &'a Context<'a>,
    ) -> Self {
        Search {
            claim,
            proofs,
            cx,
            errors: Vec::new(),
            steps: 0,
            forged: std::collections::HashSet::new(),
        }
    }

    /// Follows the proofs of `invocation` until one reaches a root (2g), or none is left (3).
    fn run(mut self, invocation: &'a Ucan) -> Result<Checked, Denied> {
        let mut pending = vec![Step {
            holder: invocation,
            path: Vec::new(),
            not_before: invocation.nbf,
            expires: invocation.exp,
        }];
        while let Some(step) = pending.pop() {
            for link in &step.holder.prf {
                self.steps += 1;
                if self.steps > MAX_STEPS {
                    self.errors
                        .push(format!("gave up after examining {MAX_STEPS} proofs"));
                    return Err(unauthorized(self.claim, &self.errors));
                }
                let Some(proof) = self.examine(link, step.holder) else {
                    continue;
                };
                let mut path = step.path.clone();
                path.push(*link);
                let not_before = max_opt(step.not_before, proof.nbf);
                let expires = min_opt(step.expires, proof.exp);
                // 2g (an effect of this gateway was refused at 2e)
                if let Some(subject) = root_subject(proof, self.claim, self.cx, false) {
                    path.reverse();
                    return Ok(Checked {
                        capability: self.claim.clone(),
                        subject,
                        chain: path,
                        not_before,
                        expires,
                    });
                }
                if path.len() >= MAX_CHAIN {
                    self.errors
                        .push(format!("Proof chain is longer than {MAX_CHAIN}"));
                    continue;
                }
                pending.push(Step {
                    holder: proof,
                    path,
                    not_before,
                    expires,
                });
            }
        }
        Err(self.none_found())
    }

    /// 2a–2f for the proof `link` cited by `holder`: the proof if it may stand on the path, else
    /// `None` with the reason noted (a forged proof seen before is not noted twice).
    fn examine(&mut self, link: &Cid, holder: &Ucan) -> Option<&'a Ucan> {
        let cx = self.cx;
        // 2a
        let proof = match self.proofs.get(link) {
            None => return self.fail(format!("Linked proof '{link}' is not included")),
            Some(Err(e)) => return self.fail(format!("Proof {link} is malformed: {e}")),
            Some(Ok(proof)) => proof,
        };
        // 2b
        if proof.aud != holder.iss {
            return self.fail(format!(
                "Delegation audience is '{}' instead of '{}'",
                proof.aud, holder.iss
            ));
        }
        // 2c
        if self.forged.contains(link) {
            return None;
        }
        if let Err(e) = verify(proof, cx) {
            self.forged.insert(*link);
            return self.fail(format!("Proof {link} does not have a valid signature: {e}"));
        }
        // 2d
        if let Err(d) = time_bounds(proof, cx) {
            return self.fail(d.message);
        }
        // 2e
        if cx.revoked.is_revoked(link) {
            return self.fail(format!("Proof {link} has been revoked"));
        }
        if proof.iss == cx.audience && is_effect(proof) {
            return self.fail(format!(
                "Proof {link} is an effect issued by this service, not a delegation"
            ));
        }
        // 2f
        let mut reasons = Vec::new();
        let derived = proof.att.iter().any(|d| match derives(self.claim, d) {
            Ok(()) => true,
            Err(reason) => {
                reasons.push(reason);
                false
            }
        });
        if !derived {
            return self.fail(format!(
                "Capability {} is not authorized by proof {link}: {}",
                describe(self.claim),
                reasons.join("; ")
            ));
        }
        Some(proof)
    }

    /// Notes why a proof cannot stand on the path.
    fn fail(&mut self, line: String) -> Option<&'a Ucan> {
        self.errors.push(line);
        None
    }

    /// 3: no root found.
    fn none_found(mut self) -> Denied {
        if !self.claim.with.starts_with("did:") {
            self.errors.push(format!(
                "Resource {} is not a DID: only a subject this service trusts can issue it",
                show_str(&self.claim.with)
            ));
        }
        unauthorized(self.claim, &self.errors)
    }
}

/// The subject a chain rooted at `token` rests on, if `token` may be a root: its issuer owns the
/// resource (`with`), or is trusted and `effect` (a gateway effect, never trusted) is false.
fn root_subject(
    token: &Ucan,
    claim: &Capability,
    cx: &Context<'_>,
    effect: bool,
) -> Option<String> {
    if token.iss == claim.with || (!effect && (cx.trusted)(&token.iss)) {
        Some(token.iss.clone())
    } else {
        None
    }
}

/// Whether `text` has the shape of an absolute URI: an RFC 3986 scheme, `:`, and a non-empty rest
/// without spaces or control characters. (ucanto parses `with` with the WHATWG URL parser; this is
/// the part of that which matters here: the gateway never dereferences a resource.)
fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `token` carries the [`EFFECT_FACT`].
fn is_effect(token: &Ucan) -> bool {
    token
        .fct
        .iter()
        .any(|fact| matches!(fact, Ipld::Map(map) if map.contains_key(EFFECT_FACT)))
}

fn unauthorized(claim: &Capability, errors: &[String]) -> Denied {
    let mut message = format!("Claim {} is not authorized", describe(claim));
    if errors.is_empty() {
        message.push_str("\n  - No matching delegated capability found");
    }
    for error in errors {
        message.push_str("\n  - ");
        message.push_str(&error.replace('\n', "\n    "));
    }
    denied("Unauthorized", message)
}

fn verify(token: &Ucan, cx: &Context<'_>) -> Result<(), TokenError> {
    if cx.verified.is_verified(&token.cid) {
        return Ok(());
    }
    token.verify()?;
    cx.verified.mark_verified(&token.cid);
    Ok(())
}

/// Verifies the invocation's signature, with its issuer's key parsed once per issuer.
fn verify_invocation(invocation: &Ucan, cx: &Context<'_>) -> Result<(), TokenError> {
    let key = match cx.verified.issuer_key(&invocation.iss) {
        Some(key) => key,
        None => {
            let key = invocation.issuer_key()?;
            cx.verified.keep_issuer_key(&invocation.iss, &key);
            key
        }
    };
    invocation.verify_with(&key)
}

fn time_bounds(token: &Ucan, cx: &Context<'_>) -> Result<(), Denied> {
    if let Some(exp) = token.exp
        && exp.saturating_add(cx.leeway) < cx.now
    {
        return Err(denied(
            "Expired",
            format!("Proof {} has expired on {}", token.cid, iso(exp)),
        ));
    }
    if let Some(nbf) = token.nbf
        && nbf.saturating_sub(cx.leeway) > cx.now
    {
        return Err(denied(
            "NotValidBefore",
            format!("Proof {} is not valid before {}", token.cid, iso(nbf)),
        ));
    }
    Ok(())
}

/// Whether the delegated capability `d` covers `claim` (the default `derives` of `@ucanto/validator`
/// plus its ability wildcards). Caveats are compared as whole IPLD values.
pub fn derives(claim: &Capability, d: &Capability) -> Result<(), String> {
    let with_ok = if d.with == "ucan:*" {
        true
    } else if let Some(prefix) = d.with.strip_suffix('*') {
        claim.with.starts_with(prefix)
    } else {
        d.with == claim.with
    };
    if !with_ok {
        return Err(format!(
            "Resource {} is not contained by {}",
            claim.with, d.with
        ));
    }
    let can_ok = d.can == "*"
        || d.can == claim.can
        || d.can
            .strip_suffix('*')
            .is_some_and(|ns| ns.ends_with('/') && claim.can.starts_with(ns));
    if !can_ok {
        return Err(format!("{} is not contained by {}", claim.can, d.can));
    }
    for (name, value) in &d.nb {
        if claim.nb.get(name) != Some(value) {
            return Err(format!(
                "Constraint violation: {name}: {} violates {}",
                show(claim.nb.get(name)),
                show(Some(value))
            ));
        }
    }
    Ok(())
}

fn describe(cap: &Capability) -> String {
    let mut map = BTreeMap::from([
        ("can".to_owned(), Ipld::String(cap.can.clone())),
        ("with".to_owned(), Ipld::String(cap.with.clone())),
    ]);
    if !cap.nb.is_empty() {
        map.insert("nb".to_owned(), Ipld::Map(cap.nb.clone()));
    }
    show(Some(&Ipld::Map(map)))
}

fn show_str(text: &str) -> String {
    show(Some(&Ipld::String(text.to_owned())))
}

/// A value for an error message, shortened: caveats are attacker-sized.
fn show(value: Option<&Ipld>) -> String {
    let Some(value) = value else {
        return "undefined".to_owned();
    };
    let text = crate::ipld::to_dag_json(value).unwrap_or_else(|_| "?".to_owned());
    if text.chars().count() > 200 {
        let short: String = text.chars().take(200).collect();
        format!("{short}…")
    } else {
        text
    }
}

/// RFC 3339 UTC, as people read dates in messages.
fn iso(unix: i64) -> String {
    u64::try_from(unix)
        .ok()
        .map(|s| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
            )
            .to_string()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
