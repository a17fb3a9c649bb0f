//! What every wire format hands the path: one [`Inbound`] per invocation, holding the invocation in
//! UCAN 1.0 terms, its replay key, and how its authority is established ([`Claim`]). A wire format is
//! a decoder producing these and an encoder for its answers; everything between is
//! [`super::Gateway::handle`], the same for all of them.

use std::borrow::Cow;
use std::collections::HashMap;

use cid::Cid;

use super::Refusal;
use crate::ucan::invocation::InvocationPayload;
use crate::ucan::validate::Authorized;
use crate::ucan::{Delegation, Invocation};

/// What replay protection keys on, and the size of the token that carried the task.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Replay {
    /// The CID of what the invoker signed (not of the token: a re-encoded signature must not
    /// replay).
    pub key: Cid,
    /// The length of the token carrying the task; bounds the size of its arguments.
    pub token_len: usize,
}

/// How an invocation's authority is established.
pub(crate) enum Claim<'r> {
    /// A UCAN 1.0 invocation and the delegations that came with it: checked by the path with
    /// [`crate::ucan::validate`], once, with its policies on the arguments after promises resolve.
    Ucan {
        /// The signed invocation.
        invocation: &'r Invocation,
        /// The delegations of the request, by CID.
        proofs: &'r HashMap<Cid, Delegation>,
    },
    /// An invocation whose chain its wire format already checked by its own rules (ucanto): the
    /// authorisation it established, and the delegation it revokes if it is a revocation.
    Checked {
        /// What the chain authorises.
        auth: Box<Authorized>,
        /// For a revocation, the delegation revoked (its right to revoke already checked).
        revokes: Option<Cid>,
    },
}

/// Which wire format an invocation came in, for the few answers worded as that format's clients
/// expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// UCAN 1.0 containers.
    Container,
    /// ucanto messages over CAR.
    Ucanto,
}

impl Wire {
    /// The refusal for a command no route serves.
    pub(crate) fn unknown_command(self, payload: &InvocationPayload) -> Refusal {
        match self {
            Wire::Container => Refusal::not_found(
                "UnknownCommand",
                format!("this gateway does not offer {}", payload.cmd),
            ),
            // As `@ucanto/server` words it.
            Wire::Ucanto => Refusal::not_found(
                "HandlerNotFound",
                format!(
                    "service does not implement {{can: \"{}\"}}",
                    payload.cmd.as_str().trim_start_matches('/')
                ),
            ),
        }
    }
}

/// One invocation on its way through the path.
pub(crate) struct Inbound<'r> {
    /// The invocation's CID (a receipt's `ran`).
    pub cid: Cid,
    /// The invocation in UCAN 1.0 terms (a ucanto invocation is mapped onto one).
    pub payload: Cow<'r, InvocationPayload>,
    /// Its replay key.
    pub replay: Replay,
    /// How its authority is established.
    pub claim: Claim<'r>,
    /// The wire format it came in.
    pub wire: Wire,
}

impl Inbound<'_> {
    /// The delegations of the request, which effects may cite (none for a wire format whose
    /// delegations a UCAN 1.0 effect cannot cite). Proofs the request cited by CID alone are
    /// not among them; an effect citing those is completed from the store like any invocation.
    pub(crate) fn proofs(&self) -> Option<&HashMap<Cid, Delegation>> {
        match &self.claim {
            Claim::Ucan { proofs, .. } => Some(proofs),
            Claim::Checked { .. } => None,
        }
    }
}
