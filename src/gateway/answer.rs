//! What the gateway gives back: an [`Answer`] (a signed receipt and the effect invocations issued after
//! it) or a [`Refusal`] (nothing signed, a spec error name and a class the HTTP edge maps to a status).

use cid::Cid;

use crate::receipt::Receipt;
use crate::store::StoreError;
use crate::ucan::container::{Container, ContainerError};
use crate::ucan::{Delegation, ErrorKind, Invocation, ValidationError};

/// A signed receipt, and the effects issued as invocations with `cause` = the receipt.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The receipt.
    pub receipt: Receipt,
    /// Effect invocations, fork first then join.
    pub effects: Vec<Invocation>,
    /// Delegations the effect invocations cite that the client may not hold (the invoker's
    /// delegation to the gateway), so the effects can be submitted as they are.
    pub proofs: Vec<Delegation>,
}

/// What a request gets back: an answer per invocation run, in the order they finished, and the
/// refusal that stopped a pipeline early, if one did.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The answers.
    pub answers: Vec<Answer>,
    /// The invocation refused, and why; the invocations after it in the pipeline did not run.
    pub refused: Option<(Cid, Refusal)>,
}

impl From<Answer> for Reply {
    fn from(answer: Answer) -> Self {
        Reply {
            answers: vec![answer],
            refused: None,
        }
    }
}

impl Reply {
    /// `ok` if every answer is `ok` and nothing was refused, else `error`; for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        if self.refused.is_none() && self.answers.iter().all(|a| a.outcome() == "ok") {
            "ok"
        } else {
            "error"
        }
    }

    /// Every receipt, then every effect invocation and the delegations they need, as one container.
    pub fn to_container(&self) -> Container {
        let mut tokens: Vec<Vec<u8>> = self
            .answers
            .iter()
            .map(|a| a.receipt.bytes().to_vec())
            .collect();
        for answer in &self.answers {
            tokens.extend(answer.effects.iter().map(|e| e.bytes().to_vec()));
            tokens.extend(answer.proofs.iter().map(|d| d.bytes().to_vec()));
        }
        Container { tokens }
    }

    /// A readable view for `Accept: application/json`: one answer as [`Answer::to_json`]; a
    /// pipeline as `{"answers": [...], "refused"?: {"invocation", "error": {name, message}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        if let ([answer], None) = (self.answers.as_slice(), &self.refused) {
            return answer.to_json();
        }
        let mut json = serde_json::json!({
            "answers": self.answers.iter().map(Answer::to_json).collect::<Vec<_>>(),
        });
        if let Some((cid, refusal)) = &self.refused {
            json["refused"] = serde_json::json!({
                "invocation": cid.to_string(),
                "error": { "name": refusal.name, "message": refusal.message },
            });
        }
        json
    }
}

impl Answer {
    /// An answer with no extra delegations.
    pub fn new(receipt: Receipt, effects: Vec<Invocation>) -> Self {
        Answer {
            receipt,
            effects,
            proofs: Vec::new(),
        }
    }

    /// `ok` or `error`, for logs and metrics.
    pub fn outcome(&self) -> &'static str {
        if self.receipt.body.out.is_ok() {
            "ok"
        } else {
            "error"
        }
    }

    /// The receipt and its effects as one container.
    pub fn to_container(&self) -> Container {
        Reply::from(self.clone()).to_container()
    }

    /// A readable view for `Accept: application/json`.
    pub fn to_json(&self) -> serde_json::Value {
        let effects: Vec<serde_json::Value> = self
            .effects
            .iter()
            .map(|inv| {
                let payload = crate::ipld::to_dag_json(&inv.envelope.payload)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or(serde_json::Value::Null);
                serde_json::json!({ "cid": inv.cid().to_string(), "invocation": payload })
            })
            .collect();
        serde_json::json!({ "receipt": self.receipt.to_json(), "effects": effects })
    }
}

/// How a refusal maps onto HTTP (the edge decides the status; the gateway only classifies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalClass {
    /// The request could not be read (400).
    Malformed,
    /// A signature or token is bad (401).
    Unauthenticated,
    /// Valid tokens, insufficient authority (403).
    Forbidden,
    /// No such command or receipt (404).
    NotFound,
    /// The invocation was already run (409).
    Replayed,
    /// Too large (413).
    TooLarge,
    /// Too many requests for a caller's budget; try again after `retry_after` (429).
    RateLimited,
    /// Proofs cited by CID that neither the request nor the store holds (510, the UCAN HTTP
    /// bearer-token convention): send again with the delegations `missing` names.
    NotExtended,
    /// The gateway could not do its own part, e.g. the store failed (503).
    Unavailable,
}

/// Why the gateway refused, before anything was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// How it maps onto HTTP.
    pub class: RefusalClass,
    /// The error name (the spec's where one exists).
    pub name: &'static str,
    /// For humans.
    pub message: String,
    /// The CIDs of the proofs the gateway lacks (for [`RefusalClass::NotExtended`]), so a client
    /// can send exactly those.
    pub missing: Vec<Cid>,
    /// How many seconds to wait before trying again, when the refusal says.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal of `class`.
    pub fn new(class: RefusalClass, name: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            class,
            name,
            message: message.into(),
            missing: Vec::new(),
            retry_after: None,
        }
    }

    /// 510 `UnavailableProof`: the proofs `missing` are neither in the request nor kept.
    pub fn unavailable_proofs(missing: Vec<Cid>) -> Self {
        let list: Vec<String> = missing.iter().map(Cid::to_string).collect();
        Refusal {
            missing,
            ..Self::new(
                RefusalClass::NotExtended,
                "UnavailableProof",
                format!(
                    "proofs not supplied and not kept by this gateway: {}; send them with the \
                     invocation (or POST /delegations)",
                    list.join(", ")
                ),
            )
        }
    }

    /// 429 named `name`, to be tried again after `retry_after` seconds.
    pub fn rate_limited(name: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        Refusal {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(RefusalClass::RateLimited, name, message)
        }
    }

    /// 400.
    pub fn malformed(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(RefusalClass::Malformed, name, message)
    }

    /// 403.
    pub fn forbidden(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(RefusalClass::Forbidden, name, message)
    }

    /// 413.
    pub fn too_large(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(RefusalClass::TooLarge, name, message)
    }

    /// 404.
    pub fn not_found(name: &'static str, message: impl Into<String>) -> Self {
        Self::new(RefusalClass::NotFound, name, message)
    }
}

impl From<ValidationError> for Refusal {
    fn from(e: ValidationError) -> Self {
        let class = match e.kind {
            ErrorKind::InvalidSignature | ErrorKind::MalformedToken => {
                RefusalClass::Unauthenticated
            }
            // A limit is not a matter of authority: the request is too big, not forbidden.
            kind if kind.is_limit() => RefusalClass::Malformed,
            _ => RefusalClass::Forbidden,
        };
        let message = match e.proof() {
            Some(proof) => format!("{} (proof {proof})", e.message),
            None => e.message,
        };
        Refusal::new(class, e.kind.name(), message)
    }
}

impl From<ContainerError> for Refusal {
    fn from(e: ContainerError) -> Self {
        let class = match e {
            ContainerError::TooLarge => RefusalClass::TooLarge,
            _ => RefusalClass::Malformed,
        };
        Refusal::new(class, e.name(), e.to_string())
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        // The details go to the log, never to the client.
        tracing::error!(error = %e, "store failure");
        Refusal::new(RefusalClass::Unavailable, "StoreUnavailable", e.to_string())
    }
}
