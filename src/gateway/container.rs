//! The UCAN 1.0 wire format: a `ctn-v1` container holding one or more invocations (a pipeline) and
//! the delegations they cite. Decoded into [`Inbound`]s for the path; answered with the receipts as
//! a container (the HTTP edge picks the encoding).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use cid::Cid;

use super::inbound::{Claim, Inbound, Replay, Wire};
use super::pipeline::OnRefusal;
use super::{Gateway, MAX_PIPELINE, Refusal, Reply};
use crate::ipld::dag_cbor_cid;
use crate::ucan::container::Container;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::{Delegation, Invocation};

/// A decoded request: its invocations, in container order, and the delegations that came with them.
pub(crate) struct Request {
    pub invocations: Vec<Invocation>,
    pub proofs: HashMap<Cid, Delegation>,
}

impl Gateway {
    /// Runs the invocations of a container: one, or a pipeline of several linked by promises. The
    /// caller waits at most `wait` for work that may outlive the request (HTTP `Prefer: wait=N`)
    /// before taking a receipt that points at it.
    pub async fn invoke(&self, container: &[u8], wait: Option<Duration>) -> Result<Reply, Refusal> {
        let started = Instant::now();
        let request = decode(container).inspect_err(|refusal| self.refused(refusal, started))?;
        let inbounds: Vec<Inbound<'_>> = request
            .invocations
            .iter()
            .map(|invocation| inbound(invocation, &request.proofs))
            .collect();
        let mut answers = Vec::new();
        let mut refused = None;
        for (i, result) in self.run_all(&inbounds, OnRefusal::Stop, wait).await {
            match result {
                Ok(answer) => answers.push(answer),
                Err(refusal) if refused.is_none() => refused = Some((inbounds[i].cid, refusal)),
                Err(_) => {}
            }
        }
        match refused {
            Some((_, refusal)) if answers.is_empty() => Err(refusal),
            refused => Ok(Reply { answers, refused }),
        }
    }

    /// Counts and logs a request refused before any invocation in it could be read.
    pub(super) fn refused(&self, refusal: &Refusal, started: Instant) {
        let elapsed = started.elapsed();
        self.ledger.observe("-", refusal.name, elapsed);
        // The same line as for an invocation, so every request is in the invocation log.
        tracing::info!(
            invocation = "-",
            outcome = refusal.name,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "invocation"
        );
    }
}

/// A UCAN 1.0 invocation with the delegations of its request, ready for the path.
pub(crate) fn inbound<'r>(
    invocation: &'r Invocation,
    proofs: &'r HashMap<Cid, Delegation>,
) -> Inbound<'r> {
    Inbound {
        cid: invocation.cid(),
        payload: Cow::Borrowed(&invocation.payload),
        replay: Replay {
            key: dag_cbor_cid(invocation.envelope.signed_bytes()),
            token_len: invocation.bytes().len(),
        },
        claim: Claim::Ucan { invocation, proofs },
        wire: Wire::Container,
    }
}

/// Reads a container holding one or more invocations (at most [`MAX_PIPELINE`]) and any number
/// of delegations.
fn decode(container: &[u8]) -> Result<Request, Refusal> {
    let container = Container::decode(container)?;
    let mut invocations = Vec::new();
    let mut proofs = HashMap::new();
    for token in &container.tokens {
        let envelope = Envelope::decode(token).map_err(crate::ucan::ValidationError::from)?;
        match envelope.kind {
            Kind::Invocation => {
                if invocations.len() == MAX_PIPELINE {
                    return Err(Refusal::malformed(
                        "PipelineTooLong",
                        format!("more than {MAX_PIPELINE} invocations; at most {MAX_PIPELINE}"),
                    ));
                }
                invocations.push(Invocation::from_envelope(envelope)?);
            }
            Kind::Delegation => {
                let dlg = Delegation::from_envelope(envelope)?;
                proofs.insert(dlg.cid(), dlg);
            }
        }
    }
    if invocations.is_empty() {
        return Err(Refusal::malformed(
            "MalformedContainer",
            "the container holds no invocation",
        ));
    }
    Ok(Request {
        invocations,
        proofs,
    })
}
