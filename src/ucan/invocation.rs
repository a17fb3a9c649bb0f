//! Invocation tokens (`ucan/inv@1.0.0`): an invoker asks an executor to run a command on a subject with
//! arguments, citing the delegations (`prf`) that prove its authority. Receipts are invocations too
//! (of `/ucan/assert`), so this type reads them as well.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::SigningKey;
use crate::ipld::{dag_cbor_cid, to_dag_cbor};
use crate::ucan::command::Command;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::error::{ErrorKind, ValidationError};
use crate::ucan::fields::{Fields, MapBuilder, int_or_null, random_nonce};

/// The fields of an invocation payload.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationPayload {
    /// Invoker.
    pub iss: String,
    /// Subject whose authority is exercised.
    pub sub: String,
    /// Intended executor, when it is not the subject.
    pub aud: Option<String>,
    /// The command to run.
    pub cmd: Command,
    /// Arguments, constrained by every policy in the chain.
    pub args: BTreeMap<String, Ipld>,
    /// Delegation CIDs, root first (a leaf-first list is also accepted by validation).
    pub prf: Vec<Cid>,
    /// Metadata (e.g. execution settings); not part of the task identity.
    pub meta: Option<BTreeMap<String, Ipld>>,
    /// Nonce bytes; empty for idempotent tasks that should share a task id.
    pub nonce: Vec<u8>,
    /// Expiry (Unix seconds); `None` is `null`.
    pub exp: Option<i64>,
    /// Issued at (a claim by the invoker, not trusted).
    pub iat: Option<i64>,
    /// Not before (Unix seconds). Not an invocation field in the spec; an invocation that carries one
    /// is refused (`TooEarly`) until then rather than run early.
    pub nbf: Option<i64>,
    /// The receipt that enqueued this task.
    pub cause: Option<Cid>,
}

impl InvocationPayload {
    /// Reads a payload map. Unknown fields are ignored.
    pub fn from_ipld(payload: &Ipld) -> Result<Self, ValidationError> {
        let f = Fields::new(payload, "invocation")?;
        Ok(InvocationPayload {
            iss: f.string("iss")?,
            sub: f.string("sub")?,
            aud: f.opt_string("aud")?,
            cmd: f.command("cmd")?,
            args: f.map("args")?.clone(),
            prf: f.links("prf")?,
            meta: f.opt_map("meta")?.cloned(),
            nonce: f.bytes("nonce")?,
            exp: f.expiry("exp")?,
            iat: f.opt_int("iat")?,
            nbf: f.opt_int("nbf")?,
            cause: f.opt_link("cause")?,
        })
    }

    /// The payload map.
    pub fn to_ipld(&self) -> Ipld {
        MapBuilder::default()
            .set("iss", Ipld::String(self.iss.clone()))
            .set("sub", Ipld::String(self.sub.clone()))
            .opt("aud", self.aud.clone().map(Ipld::String))
            .set("cmd", Ipld::String(self.cmd.to_string()))
            .set("args", Ipld::Map(self.args.clone()))
            .set(
                "prf",
                Ipld::List(self.prf.iter().copied().map(Ipld::Link).collect()),
            )
            .opt("meta", self.meta.clone().map(Ipld::Map))
            .set("nonce", Ipld::Bytes(self.nonce.clone()))
            .set("exp", int_or_null(self.exp))
            .opt("iat", self.iat.map(|t| Ipld::Integer(t.into())))
            .opt("nbf", self.nbf.map(|t| Ipld::Integer(t.into())))
            .opt("cause", self.cause.map(Ipld::Link))
            .build()
    }

    /// The executor this invocation is addressed to: `aud`, or the subject when `aud` is absent.
    pub fn executor(&self) -> &str {
        self.aud.as_deref().unwrap_or(&self.sub)
    }

    /// The task id of the invocation spec: the CID of the DAG-CBOR map `{sub, cmd, args, nonce}`.
    /// Execution settings (`meta`), the invoker and the proofs are deliberately left out, so the same
    /// work requested twice with the same nonce has the same id.
    pub fn task_id(&self) -> Cid {
        task_id(&self.sub, &self.cmd, &self.args, &self.nonce)
    }
}

/// The task id for the given task fields (see [`InvocationPayload::task_id`]).
pub fn task_id(sub: &str, cmd: &Command, args: &BTreeMap<String, Ipld>, nonce: &[u8]) -> Cid {
    let task = MapBuilder::default()
        .set("sub", Ipld::String(sub.to_owned()))
        .set("cmd", Ipld::String(cmd.to_string()))
        .set("args", Ipld::Map(args.clone()))
        .set("nonce", Ipld::Bytes(nonce.to_vec()))
        .build();
    // Encoding a map of strings, bytes and already-decoded IPLD cannot fail; an empty input would
    // still give a well-defined CID, so there is no panic path here.
    dag_cbor_cid(&to_dag_cbor(&task).unwrap_or_default())
}

/// A decoded invocation: its envelope and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The signed envelope.
    pub envelope: Envelope,
    /// The decoded payload.
    pub payload: InvocationPayload,
}

impl Invocation {
    /// Decodes token bytes. The signature is checked by validation, not here.
    pub fn decode(bytes: &[u8]) -> Result<Self, ValidationError> {
        let envelope = Envelope::decode(bytes)?;
        Self::from_envelope(envelope)
    }

    /// Reads a decoded envelope as an invocation.
    pub fn from_envelope(envelope: Envelope) -> Result<Self, ValidationError> {
        if envelope.kind != Kind::Invocation {
            return Err(ValidationError::new(
                ErrorKind::MalformedToken,
                format!("token {} is not an invocation", envelope.cid),
            ));
        }
        let payload = InvocationPayload::from_ipld(&envelope.payload)?;
        Ok(Invocation { envelope, payload })
    }

    /// The invocation's CID.
    pub fn cid(&self) -> Cid {
        self.envelope.cid
    }

    /// The encoded token.
    pub fn bytes(&self) -> &[u8] {
        &self.envelope.bytes
    }
}

/// Builds and signs an invocation.
#[derive(Debug, Clone)]
pub struct InvocationBuilder {
    payload: InvocationPayload,
    nonce_set: bool,
}

impl InvocationBuilder {
    /// An invocation of `cmd` on `sub` with `args`, no proofs, no expiry and a random nonce until told
    /// otherwise. The issuer is set when signing.
    pub fn new(sub: impl Into<String>, cmd: Command, args: BTreeMap<String, Ipld>) -> Self {
        InvocationBuilder {
            payload: InvocationPayload {
                iss: String::new(),
                sub: sub.into(),
                aud: None,
                cmd,
                args,
                prf: Vec::new(),
                meta: None,
                nonce: Vec::new(),
                exp: None,
                iat: None,
                nbf: None,
                cause: None,
            },
            nonce_set: false,
        }
    }

    /// Sets the audience (executor).
    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.payload.aud = Some(aud.into());
        self
    }

    /// Sets the proof CIDs, root first.
    pub fn proofs(mut self, prf: Vec<Cid>) -> Self {
        self.payload.prf = prf;
        self
    }

    /// Sets the expiry (`None`: `null`).
    pub fn expires(mut self, exp: Option<i64>) -> Self {
        self.payload.exp = exp;
        self
    }

    /// Sets "not before" (honoured by validation, though the invocation spec defines no such field).
    pub fn not_before(mut self, nbf: Option<i64>) -> Self {
        self.payload.nbf = nbf;
        self
    }

    /// Sets "issued at".
    pub fn issued_at(mut self, iat: Option<i64>) -> Self {
        self.payload.iat = iat;
        self
    }

    /// Sets the metadata map.
    pub fn meta(mut self, meta: BTreeMap<String, Ipld>) -> Self {
        self.payload.meta = Some(meta);
        self
    }

    /// Sets the nonce (empty for idempotent tasks).
    pub fn nonce(mut self, nonce: Vec<u8>) -> Self {
        self.payload.nonce = nonce;
        self.nonce_set = true;
        self
    }

    /// Sets the cause (the receipt that enqueued this task).
    pub fn cause(mut self, cause: Cid) -> Self {
        self.payload.cause = Some(cause);
        self
    }

    /// Signs with `issuer`, whose DID becomes `iss`.
    pub fn sign(mut self, issuer: &SigningKey) -> Result<Invocation, ValidationError> {
        self.payload.iss = issuer.did();
        if !self.nonce_set {
            self.payload.nonce = random_nonce();
        }
        let envelope = Envelope::sign(Kind::Invocation, self.payload.to_ipld(), issuer)
            .map_err(|e| ValidationError::new(ErrorKind::MalformedToken, e.to_string()))?;
        Ok(Invocation {
            envelope,
            payload: self.payload,
        })
    }
}
