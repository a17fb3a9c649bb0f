//! `ucan/revoke` for dag-ucan delegations: `{with: <revoker DID>, can: "ucan/revoke", nb: {ucan:
//! &delegation}}`, invoked by the revoker on its own authority (`iss` = `with`), the shape
//! `@storacha/capabilities` defines.
//!
//! As for UCAN 1.0 revocations, the issuer of any delegation on the path to the revoked one may revoke
//! it: the revoked delegation must come with the request, and so must its proofs up to one issued by
//! the revoker, each signed and aligned (`aud` of a proof = `iss` of the token citing it). Strangers
//! cannot fill the store with revocations. The search is a bounded loop.

use std::collections::HashMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use super::capability::{Checked, Denied, MAX_STEPS};
use super::token::{TokenError, Ucan};
use crate::ucan::validate::MAX_CHAIN;

/// The ability that revokes a delegation.
pub const REVOKE_ABILITY: &str = "ucan/revoke";

fn denied(name: &'static str, message: String) -> Denied {
    Denied { name, message }
}

/// The delegation `invocation` may revoke, given what [`super::capability::check`] established.
pub fn target(
    invocation: &Ucan,
    checked: &Checked,
    tokens: &HashMap<Cid, Result<Ucan, TokenError>>,
) -> Result<Cid, Denied> {
    let cap = &checked.capability;
    if cap.with != invocation.iss {
        return Err(denied(
            "Unauthorized",
            format!(
                "{} can only revoke on its own authority (with = {})",
                invocation.iss, invocation.iss
            ),
        ));
    }
    let Some(Ipld::Link(target)) = cap.nb.get("ucan") else {
        return Err(denied(
            "MalformedCapability",
            "ucan/revoke needs nb.ucan: a link to the delegation".to_owned(),
        ));
    };
    let Some(Ok(revoked)) = tokens.get(target) else {
        return Err(denied(
            "UnavailableProof",
            format!("send the delegation {target} being revoked along with the revocation"),
        ));
    };

    // Upwards from the revoked delegation through its proofs, to one the revoker issued.
    let mut pending: Vec<(&Ucan, Vec<&Ucan>)> = vec![(revoked, vec![revoked])];
    let mut steps = 0usize;
    while let Some((token, path)) = pending.pop() {
        if token.iss == invocation.iss {
            for link in &path {
                link.verify().map_err(|e| {
                    denied(
                        "InvalidSignature",
                        format!("delegation {} on the revocation path: {e}", link.cid),
                    )
                })?;
            }
            return Ok(*target);
        }
        if path.len() >= MAX_CHAIN {
            continue;
        }
        for cid in &token.prf {
            steps += 1;
            if steps > MAX_STEPS {
                break;
            }
            if let Some(Ok(proof)) = tokens.get(cid)
                && proof.aud == token.iss
            {
                let mut next = path.clone();
                next.push(proof);
                pending.push((proof, next));
            }
        }
    }
    Err(denied(
        "Unauthorized",
        format!(
            "{} issued no delegation on the path to {target}, so cannot revoke it",
            invocation.iss
        ),
    ))
}
