//! ucanto compatibility: `@ucanto/client` apps talk to the gateway unchanged.
//!
//! A ucanto request is a CAR ([`car`]) whose root is `{"ucanto/message@7.0.0": {execute: [&inv, …]}}`;
//! invocations and their proofs are UCAN 0.9.1 tokens in the dag-ucan encoding ([`token`]) with
//! `{with, can, nb}` capabilities, checked by ucanto's rules ([`capability`]). An authorised one is
//! mapped onto the same [`Authorized`] and [`InvocationPayload`] the UCAN 1.0 path produces:
//!
//! | ucanto        | UCAN 1.0 / task                                         |
//! |---------------|---------------------------------------------------------|
//! | `with`        | `sub`: `with`, or the trusted issuer of the root ([`Checked::subject`]) |
//! | `can`         | `cmd` = `/` + `can` (`wasm/run` ↔ `/wasm/run`)          |
//! | `nb`          | `args` (absent `nb` = `{}`)                             |
//! | `nnc`         | `nonce` (its UTF-8 bytes; absent = empty)               |
//! | `fct`         | `meta["ipvm/config"]` from the first fact that has one  |
//! | `iss`, `aud`, `exp` | `iss`, `aud`, `exp`                               |
//!
//! so the work id, routing, limits, executors, memoization, replay protection and revocation are the
//! gateway's own; `ucan/revoke` ([`revoke`]) records revocations in the same store. The answer is a CAR whose root is `{"ucanto/message@7.0.0": {report: {"<inv>":
//! &receipt}}}` with ucanto receipts ([`receipt`]). This module does no I/O and knows no HTTP.

pub mod capability;
pub mod car;
pub mod receipt;
pub mod revoke;
pub mod token;

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::task::CONFIG_KEY;
use crate::ucan::command::Command;
use crate::ucan::invocation::InvocationPayload;
use crate::ucan::validate::Authorized;
use capability::Checked;
use car::{Car, CarError};
use token::{TokenError, Ucan};

/// The media type of ucanto's CAR transport.
pub const CONTENT_TYPE: &str = "application/vnd.ipld.car";

/// The message tag of the ucanto wire format this gateway speaks.
pub const MESSAGE_TAG: &str = "ucanto/message@7.0.0";

/// Most invocations in one message.
pub const MAX_INVOCATIONS: usize = 32;

/// Why a request body is not a ucanto message (the whole request is refused with 400).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// Not a valid CARv1.
    #[error("malformed CAR: {0}")]
    Car(#[from] CarError),
    /// The root is not `{"ucanto/message@7.0.0": {execute: [links]}}`.
    #[error("not a {MESSAGE_TAG} message: {0}")]
    Shape(String),
    /// An invocation named in `execute` is missing or is not a dag-ucan token.
    #[error("invocation {cid}: {error}")]
    Invocation {
        /// The invocation's CID.
        cid: String,
        /// What is wrong with it.
        error: TokenError,
    },
}

/// A decoded request: the invocations to run, in order, and every block that came with them.
#[derive(Debug, Clone)]
pub struct Message {
    /// The invocations of `execute`, decoded (signatures not yet checked).
    pub invocations: Vec<Ucan>,
    /// Every block of the archive, decoded as a token where it is one.
    pub tokens: HashMap<Cid, Result<Ucan, TokenError>>,
    /// The raw blocks, to echo invocations and their proofs back with the receipts.
    pub blocks: BTreeMap<Cid, Vec<u8>>,
}

impl Message {
    /// Reads a request body.
    pub fn decode(bytes: &[u8]) -> Result<Message, MessageError> {
        let car = Car::decode(bytes)?;
        let root = car
            .root
            .and_then(|r| car.blocks.get(&r))
            .ok_or_else(|| MessageError::Shape("no root block".into()))?;
        let shape = |m: &str| MessageError::Shape(m.to_owned());
        let root =
            crate::ipld::from_dag_cbor_strict(root).map_err(|e| MessageError::Shape(e.into()))?;
        let Ipld::Map(mut root) = root else {
            return Err(shape("the root is not a map"));
        };
        let Some(Ipld::Map(body)) = root.remove(MESSAGE_TAG) else {
            return Err(shape("the root has no message of this version"));
        };
        let execute = match body.get("execute") {
            None => Vec::new(),
            Some(Ipld::List(links)) => links
                .iter()
                .map(|l| match l {
                    Ipld::Link(cid) => Ok(*cid),
                    _ => Err(shape("`execute` must hold links")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(shape("`execute` must be a list")),
        };
        if execute.len() > MAX_INVOCATIONS {
            return Err(MessageError::Shape(format!(
                "more than {MAX_INVOCATIONS} invocations"
            )));
        }
        let tokens: HashMap<Cid, Result<Ucan, TokenError>> = car
            .blocks
            .iter()
            .filter(|(cid, _)| Some(**cid) != car.root)
            .map(|(cid, bytes)| (*cid, Ucan::decode(*cid, bytes)))
            .collect();
        let invocations = execute
            .iter()
            .map(|cid| match tokens.get(cid) {
                Some(Ok(ucan)) => Ok(ucan.clone()),
                Some(Err(error)) => Err(MessageError::Invocation {
                    cid: cid.to_string(),
                    error: error.clone(),
                }),
                None => Err(MessageError::Invocation {
                    cid: cid.to_string(),
                    error: TokenError::Malformed("not among the blocks".into()),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Message {
            invocations,
            tokens,
            blocks: car.blocks,
        })
    }

    /// The blocks of `invocation` and, transitively, of every proof it cites that came with the
    /// request: what `@ucanto/server` echoes with a receipt. Bounded by the blocks received.
    pub fn dag_of(&self, invocation: &Cid) -> Vec<Block> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pending = vec![*invocation];
        while let Some(cid) = pending.pop() {
            if !seen.insert(cid) {
                continue;
            }
            if let Some(bytes) = self.blocks.get(&cid) {
                out.push((cid, bytes.clone()));
            }
            if let Some(Ok(token)) = self.tokens.get(&cid) {
                pending.extend(token.prf.iter().copied());
            }
        }
        out
    }
}

/// A block: its CID and bytes.
pub type Block = (Cid, Vec<u8>);

/// One receipt of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEntry {
    /// The invocation answered.
    pub ran: Cid,
    /// The receipt's CID.
    pub receipt: Cid,
    /// The receipt block and whatever travels with it (the invocation, its proofs, effects).
    pub blocks: Vec<Block>,
}

/// A report: receipts for invocations, as one CAR.
pub fn encode_report(entries: &[ReportEntry]) -> Vec<u8> {
    // An invocation sent twice keeps its first receipt, as `@ucanto/core`'s message builder does.
    let mut report: BTreeMap<String, Ipld> = BTreeMap::new();
    for entry in entries {
        report
            .entry(entry.ran.to_string())
            .or_insert(Ipld::Link(entry.receipt));
    }
    let root = Ipld::Map(BTreeMap::from([(
        MESSAGE_TAG.to_owned(),
        Ipld::Map(BTreeMap::from([("report".to_owned(), Ipld::Map(report))])),
    )]));
    // A map of strings and links always encodes.
    let root_bytes = crate::ipld::to_dag_cbor(&root).unwrap_or_default();
    let root_cid = crate::ipld::dag_cbor_cid(&root_bytes);
    let mut blocks = vec![(root_cid, root_bytes)];
    for entry in entries {
        blocks.extend(entry.blocks.iter().cloned());
    }
    Car::encode(root_cid, &blocks)
}

/// Why an authorised ucanto invocation cannot be expressed as a gateway invocation.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MappingError {
    /// `/` + `can` is not a valid command.
    #[error("ability {0:?} is not a command")]
    Ability(String),
}

/// The UCAN 1.0 view of a checked ucanto invocation: the payload it corresponds to and its
/// authorisation, as [`crate::ucan::validate`] would have produced them.
pub fn to_gateway(
    inv: &Ucan,
    checked: &Checked,
) -> Result<(InvocationPayload, Authorized), MappingError> {
    let cap = &checked.capability;
    let cmd = Command::parse(&format!("/{}", cap.can))
        .map_err(|_| MappingError::Ability(cap.can.clone()))?;
    let payload = InvocationPayload {
        iss: inv.iss.clone(),
        sub: checked.subject.clone(),
        aud: Some(inv.aud.clone()),
        cmd: cmd.clone(),
        args: cap.nb.clone(),
        prf: checked.chain.clone(),
        meta: config_from_facts(&inv.fct),
        nonce: inv.nnc.clone().unwrap_or_default().into_bytes(),
        exp: inv.exp,
        iat: None,
        // ucanto's `nbf` is checked with the rest of the chain (`Checked::not_before`).
        nbf: None,
        cause: None,
    };
    let auth = Authorized {
        invocation: inv.cid,
        invoker: inv.iss.clone(),
        subject: checked.subject.clone(),
        audience: inv.aud.clone(),
        command: cmd,
        args: cap.nb.clone(),
        task: payload.task_id(),
        chain: checked.chain.clone(),
        not_before: checked.not_before,
        expires: checked.expires,
    };
    Ok((payload, auth))
}

/// Execution settings travel as a fact `{"ipvm/config": {...}}` (ucanto has no `meta`).
fn config_from_facts(fct: &[Ipld]) -> Option<BTreeMap<String, Ipld>> {
    fct.iter().find_map(|fact| match fact {
        Ipld::Map(map) => map
            .get(CONFIG_KEY)
            .map(|v| BTreeMap::from([(CONFIG_KEY.to_owned(), v.clone())])),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
