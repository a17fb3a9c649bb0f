//! The ucanto wire format: each invocation of a ucanto message is checked by ucanto's rules
//! ([`crate::ucanto::capability`]) and mapped onto the same task as a UCAN 1.0 invocation, then goes
//! through the one path ([`Gateway::handle`]), so the UCAN 1.0 receipt is what the store keeps. The
//! ucanto receipt sent back is built from the same receipt body.
//!
//! Unlike the UCAN 1.0 path, a refused invocation is answered with a *signed error receipt* (not
//! stored, no replay slot used): that is how `@ucanto/server` answers and what `@ucanto/client`
//! expects, since it reads one receipt per invocation and treats any non-200 status as a transport
//! failure. Only a failure of the gateway itself (the store) fails the whole request.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Instant;

use ipld_core::ipld::Ipld;

use super::inbound::{Claim, Inbound, Replay, Wire};
use super::path::receipt_failed;
use super::pipeline::OnRefusal;
use super::{Answer, Gateway, Refusal, RefusalClass};
use crate::ipld::{RAW, cid_for};
use crate::receipt::{Effect, Out};
use crate::ucan::command::Command;
use crate::ucan::validate::unix_now;
use crate::ucanto::capability::EFFECT_FACT;
use crate::ucanto::receipt::{ReceiptContent, UcantoReceipt};
use crate::ucanto::revoke::{self, REVOKE_ABILITY};
use crate::ucanto::token::{Capability, Ucan, UcanFields};
use crate::ucanto::{Block, Message, ReportEntry, encode_report, to_gateway};

impl Gateway {
    /// Answers a ucanto message (a CAR body) with a report CAR holding one receipt per invocation.
    /// Fails only when the body is not a message (400) or the gateway cannot do its part (503).
    pub async fn invoke_ucanto(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let started = Instant::now();
        let message = Message::decode(body)
            .map_err(|e| Refusal::malformed("MalformedMessage", e.to_string()))
            .inspect_err(|refusal| self.refused(refusal, started))?;
        let now = unix_now();

        // authority by ucanto's rules, per invocation; a refusal here is that invocation's answer
        let mut results: Vec<Option<Result<Answer, Refusal>>> = Vec::new();
        let mut inbounds = Vec::new();
        let mut positions = Vec::new();
        for (i, inv) in message.invocations.iter().enumerate() {
            match self.ucanto_inbound(&message, inv, now) {
                Ok(inbound) => {
                    results.push(None);
                    inbounds.push(inbound);
                    positions.push(i);
                }
                Err(refusal) => {
                    self.observe_unchecked(inv, &refusal, started);
                    results.push(Some(Err(refusal)));
                }
            }
        }
        for (j, result) in self.run_all(&inbounds, OnRefusal::Continue, None).await {
            results[positions[j]] = Some(result);
        }

        let mut entries: Vec<ReportEntry> = Vec::with_capacity(message.invocations.len());
        for (inv, result) in message.invocations.iter().zip(results) {
            let result = result.unwrap_or_else(|| {
                Err(Refusal::new(RefusalClass::Unavailable, "NotRun", "not run"))
            });
            entries.push(self.report_entry(&message, inv, result)?);
        }
        Ok(encode_report(&entries))
    }

    /// A ucanto invocation checked by ucanto's rules, as the path takes it.
    fn ucanto_inbound<'m>(
        &self,
        message: &'m Message,
        inv: &'m Ucan,
        now: i64,
    ) -> Result<Inbound<'m>, Refusal> {
        let trusted = |did: &str| self.policy.honours(did, &self.did);
        let checked = self
            .authority
            .check_ucanto(inv, &message.tokens, now, &trusted)
            .map_err(|d| Refusal::forbidden(d.name, d.message))?;
        let (payload, auth) = to_gateway(inv, &checked)
            .map_err(|e| Refusal::malformed("MalformedCapability", e.to_string()))?;
        let revokes = if checked.capability.can == REVOKE_ABILITY {
            let target = revoke::target(inv, &checked, &message.tokens)
                .map_err(|d| Refusal::forbidden(d.name, d.message))?;
            Some(target)
        } else {
            None
        };
        Ok(Inbound {
            cid: inv.cid,
            payload: Cow::Owned(payload),
            replay: Replay {
                // What the invoker signed: the JWT signing input.
                key: cid_for(RAW, inv.signing_input()),
                token_len: message.blocks.get(&inv.cid).map_or(0, Vec::len),
            },
            claim: Claim::Checked {
                auth: Box::new(auth),
                revokes,
            },
            wire: Wire::Ucanto,
        })
    }

    /// Counts and logs an invocation refused by ucanto's rules before it reached the path.
    fn observe_unchecked(&self, inv: &Ucan, refusal: &Refusal, started: Instant) {
        let label = inv
            .att
            .first()
            .and_then(|c| Command::parse(&format!("/{}", c.can)).ok())
            .map_or("other", |cmd| self.label(&cmd));
        let elapsed = started.elapsed();
        self.ledger.observe(label, refusal.name, elapsed);
        tracing::info!(
            invocation = %inv.cid,
            issuer = %inv.iss,
            command = label,
            outcome = refusal.name,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "invocation"
        );
    }

    /// One receipt of the report: the signed ucanto receipt of `result`, with the invocation, its
    /// proofs and any effects as blocks. A failure of the gateway itself fails the whole request.
    fn report_entry(
        &self,
        message: &Message,
        inv: &Ucan,
        result: Result<Answer, Refusal>,
    ) -> Result<ReportEntry, Refusal> {
        let (out, meta, fork, join) = match result {
            Ok(answer) => {
                let cause = answer.receipt.cid();
                let body = answer.receipt.body;
                let fork = body
                    .fx
                    .fork
                    .iter()
                    .map(|e| self.ucanto_effect(e, cause))
                    .collect::<Result<Vec<_>, _>>()?;
                let join = body
                    .fx
                    .join
                    .as_ref()
                    .map(|e| self.ucanto_effect(e, cause))
                    .transpose()?;
                (body.out, body.meta, fork, join)
            }
            Err(refusal) if refusal.class == RefusalClass::Unavailable => return Err(refusal),
            Err(refusal) => (
                Out::error(refusal.name, refusal.message),
                BTreeMap::new(),
                Vec::new(),
                None,
            ),
        };
        let receipt = UcantoReceipt::issue(
            &ReceiptContent {
                ran: inv.cid,
                out: &out,
                fork: fork.iter().map(|(cid, _)| *cid).collect(),
                join: join.as_ref().map(|(cid, _)| *cid),
                meta,
            },
            &self.key,
        )
        .map_err(receipt_failed)?;
        let mut blocks = message.dag_of(&inv.cid);
        blocks.extend(fork);
        blocks.extend(join);
        blocks.push((receipt.cid, receipt.bytes));
        Ok(ReportEntry {
            ran: inv.cid,
            receipt: receipt.cid,
            blocks,
        })
    }

    /// An effect as a ucanto invocation issued by the gateway: `with` = `sub`, `can` = `cmd` without
    /// its leading `/`, `nb` = `args`, `nnc` = hex of `nonce`, `fct` = `[{EFFECT_FACT: cause}, meta]`
    /// where `cause` is the stored receipt that asked for it.
    fn ucanto_effect(&self, effect: &Effect, cause: cid::Cid) -> Result<Block, Refusal> {
        let can = effect.cmd.as_str().trim_start_matches('/');
        let fields = UcanFields {
            aud: effect.aud.clone().unwrap_or_else(|| self.did.clone()),
            att: vec![Capability {
                with: effect.sub.clone(),
                can: if can.is_empty() { "*" } else { can }.to_owned(),
                nb: effect.args.clone(),
            }],
            exp: effect.exp,
            nnc: (!effect.nonce.is_empty()).then(|| hex(&effect.nonce)),
            prf: effect.prf.clone().unwrap_or_default(),
            // The effect mark (so it can never serve as a delegation), then `meta`: dag-ucan has none,
            // facts are where ucanto puts such settings (see `to_gateway`).
            fct: std::iter::once(Ipld::Map(BTreeMap::from([(
                EFFECT_FACT.to_owned(),
                Ipld::Link(cause),
            )])))
            .chain(effect.meta.clone().map(Ipld::Map))
            .collect(),
            ..UcanFields::default()
        };
        Ucan::issue(&fields, &self.key).map_err(receipt_failed)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
