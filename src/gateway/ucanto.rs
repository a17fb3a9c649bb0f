//! The ucanto wire format through the gateway path: each invocation of a ucanto message is checked by
//! ucanto's rules ([`crate::ucanto::capability`]), mapped onto the same authorised task as a UCAN 1.0
//! invocation, and then goes through the shared [`Gateway::admit`] → [`Gateway::run`] →
//! [`Gateway::finish`], so the UCAN 1.0 receipt is what the store keeps. The ucanto receipt sent back
//! is built from the same receipt body.
//!
//! Unlike the UCAN 1.0 path, a refused invocation is answered with a *signed error receipt* (not
//! stored, no replay slot used): that is how `@ucanto/server` answers and what `@ucanto/client`
//! expects, since it reads one receipt per invocation and treats any non-200 status as a transport
//! failure. Only a failure of the gateway itself (the store) fails the whole request.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use ipld_core::ipld::Ipld;

use super::{Gateway, Replay, Summary};
use crate::gateway::{Answer, Refusal, RefusalClass};
use crate::ipld::{RAW, cid_for};
use crate::receipt::{Effect, Effects, Out, ReceiptBody, gateway_meta};
use crate::task::{EffectClass, Task};
use crate::ucan::command::Command;
use crate::ucan::invocation::InvocationPayload;
use crate::ucan::validate::{Authorized, unix_now};
use crate::ucanto::capability::{self, Context, EFFECT_FACT};
use crate::ucanto::receipt::{Outcome, UcantoReceipt};
use crate::ucanto::revoke::{self, REVOKE_ABILITY};
use crate::ucanto::token::{Capability, Ucan, UcanFields};
use crate::ucanto::{Block, Message, ReportEntry, encode_report, to_gateway};

impl Gateway {
    /// Answers a ucanto message (a CAR body) with a report CAR holding one receipt per invocation.
    /// Fails only when the body is not a message (400) or the gateway cannot do its part (503).
    pub async fn invoke_ucanto(
        &self,
        body: &[u8],
        summary: &mut Summary,
    ) -> Result<Vec<u8>, Refusal> {
        let message = Message::decode(body)
            .map_err(|e| Refusal::malformed("MalformedMessage", e.to_string()))?;
        let mut entries: Vec<ReportEntry> = Vec::with_capacity(message.invocations.len());
        for inv in &message.invocations {
            let started = Instant::now();
            summary.invocation = Some(inv.cid);
            summary.issuer = Some(inv.iss.clone());
            let command = inv
                .att
                .first()
                .map_or_else(|| "-".to_owned(), |c| format!("/{}", c.can));
            // Metrics are labelled with offered commands only: `can` is the sender's to choose, and
            // every distinct label value is a new time series.
            let label = match Command::parse(&command) {
                Ok(cmd) if self.policy.route(&cmd).is_some() => command.clone(),
                Ok(cmd) if cmd.as_str() == format!("/{REVOKE_ABILITY}") => command.clone(),
                _ => "other".to_owned(),
            };
            summary.command = Some(command);

            let mut outcome_name = "ok";
            let (out, meta, fork, join) = match self.ucanto_one(&message, inv, started).await {
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
                Err(refusal) => {
                    outcome_name = refusal.name;
                    (
                        Out::error(refusal.name, refusal.message),
                        BTreeMap::new(),
                        Vec::new(),
                        None,
                    )
                }
            };
            if outcome_name == "ok" && !out.is_ok() {
                outcome_name = "error";
            }
            self.metrics
                .invocations
                .with_label_values(&[label.as_str(), outcome_name])
                .inc();
            self.metrics
                .latency
                .with_label_values(&[label.as_str()])
                .observe(started.elapsed().as_secs_f64());

            let receipt = UcantoReceipt::issue(
                &Outcome {
                    ran: inv.cid,
                    out: &out,
                    fork: fork.iter().map(|(cid, _)| *cid).collect(),
                    join: join.as_ref().map(|(cid, _)| *cid),
                    meta,
                },
                &self.key,
            )
            .map_err(|e| Refusal::new(RefusalClass::Unavailable, "ReceiptFailed", e.to_string()))?;
            let mut blocks = message.dag_of(&inv.cid);
            blocks.extend(fork);
            blocks.extend(join);
            blocks.push((receipt.cid, receipt.bytes));
            entries.push(ReportEntry {
                ran: inv.cid,
                receipt: receipt.cid,
                blocks,
            });
        }
        Ok(encode_report(&entries))
    }

    /// The path of one ucanto invocation, up to the stored UCAN 1.0 receipt.
    async fn ucanto_one(
        &self,
        message: &Message,
        inv: &Ucan,
        started: Instant,
    ) -> Result<Answer, Refusal> {
        let now = unix_now();

        // authority, by ucanto's rules (audience, signatures, time bounds, with/can/nb)
        // (The context borrows trait objects that are not `Sync`; it must not live across an await.)
        let checked = {
            let cx = Context {
                audience: &self.did,
                now,
                leeway: self.leeway,
                revoked: &self.revoked,
                verified: &self.verified,
                trusted: &|did: &str| self.policy.honours(did, &self.did),
            };
            capability::check(inv, &message.tokens, &cx)
        }
        .map_err(|d| Refusal::forbidden(d.name, d.message))?;
        let (payload, auth) = to_gateway(inv, &checked)
            .map_err(|e| Refusal::malformed("MalformedCapability", e.to_string()))?;

        // revocation is built in
        if checked.capability.can == REVOKE_ABILITY {
            let target = revoke::target(inv, &checked, &message.tokens)
                .map_err(|d| Refusal::forbidden(d.name, d.message))?;
            return self
                .ucanto_revoke(inv, &payload, &auth, target, now, started)
                .await;
        }

        // route
        let route = self.policy.route(&payload.cmd).ok_or_else(|| {
            Refusal::not_found(
                "HandlerNotFound",
                format!(
                    "service does not implement {{can: \"{}\"}}",
                    checked.capability.can
                ),
            )
        })?;
        if payload.exp.is_none() && !route.allow_no_expiry {
            return Err(Refusal::forbidden(
                "MissingExpiry",
                format!("invocations of {} must carry an expiry (exp)", payload.cmd),
            ));
        }

        // task, then the path shared with UCAN 1.0
        let task = Task::new(&auth, &payload, route.effect)
            .map_err(|e| Refusal::malformed("InvalidConfig", e.to_string()))?;
        let token_len = message.blocks.get(&inv.cid).map_or(0, Vec::len);
        let admitted = self
            .admit(
                route,
                &auth,
                task,
                Replay {
                    key: cid_for(RAW, inv.signing_input()),
                    token_len,
                },
            )
            .await?;
        let body = self.run(&admitted, started).await;
        // Effects need authority the gateway holds. A dag-ucan delegation to the gateway cannot be
        // cited by a UCAN 1.0 effect, so here only the gateway's own commands (`gateway_effects`)
        // qualify; any other effect turns the receipt into `UnauthorizedEffect`.
        let (body, _) = self.authorize_effects(body, route, &auth, &HashMap::new(), now);
        self.finish(&admitted.task, body).await
    }

    /// Records a revocation checked by [`revoke::target`] and answers with a stored receipt, as
    /// `/ucan/revoke` does for UCAN 1.0 delegations.
    async fn ucanto_revoke(
        &self,
        inv: &Ucan,
        payload: &InvocationPayload,
        auth: &Authorized,
        target: cid::Cid,
        now: i64,
        started: Instant,
    ) -> Result<Answer, Refusal> {
        let task = Task::new(auth, payload, EffectClass::Destructive)
            .map_err(|e| Refusal::malformed("InvalidConfig", e.to_string()))?;
        let seen_until = auth.expires.map(|exp| exp.saturating_add(self.leeway));
        if !self
            .store
            .mark_seen(cid_for(RAW, inv.signing_input()), seen_until)
            .await?
        {
            return Err(Refusal::new(
                RefusalClass::Replayed,
                "Replayed",
                format!("invocation {} was already received", inv.cid),
            ));
        }
        self.store.revoke(target, inv.cid, now).await?;
        if let Ok(mut set) = self.revoked.0.write() {
            set.insert(target);
        }
        tracing::info!(delegation = %target, by = %inv.iss, "dag-ucan delegation revoked");
        let body = ReceiptBody {
            ran: inv.cid,
            task: task.id,
            out: Out::Ok(Ipld::Map(
                [("revoked".to_owned(), Ipld::Link(target))].into(),
            )),
            fx: Effects::default(),
            meta: gateway_meta("built-in", None, started.elapsed(), None),
        };
        self.finish(&task, body).await
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
        Ucan::issue(&fields, &self.key)
            .map_err(|e| Refusal::new(RefusalClass::Unavailable, "ReceiptFailed", e.to_string()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
