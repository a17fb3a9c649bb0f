//! Receipts: the gateway's signed answer to an invocation, saying what the task returned and which
//! further tasks it asks for.
//!
//! A receipt is itself a UCAN invocation, of `/ucan/assert`, issued by the gateway to itself
//! (`iss = sub = aud`), so anyone holding it can check the gateway asserted it. Its `exp` is `null`
//! (the assertion is permanent), `prf` is empty (the gateway asserts in its own name) and the nonce is
//! random. The payload:
//!
//! ```text
//! args: { "ran":  &Invocation,                          the invocation answered
//!         "task": &Task,                                its task id
//!         "out":  {"ok": any} | {"error": {"name": string, "message": string, ...}},
//!         "fx":   {"fork": [Effect, ...], "join"?: Effect} }
//! meta: { "gateway/backend": string, "gateway/fuel"?: int, "gateway/duration_ms": int,
//!         "gateway/memoized"?: &Receipt, ... }
//! ```
//!
//! This follows the 1.0 receipt-as-invocation draft for the principals and the `ok`/`error` result,
//! and keeps the `ran`/`out`/`fx` names of the earlier receipt spec, whose effects distinguish
//! concurrent `fork` tasks from a `join` continuation; the draft's `about`/`facts.run` nesting adds
//! nothing we use. An [`Effect`] has the draft's shape, except that its nonce is bytes, as in every
//! invocation, so an effect's task id is the one its issued invocation will have.
//!
//! Effects are task *descriptions*, never signed invocations. A signed effect would have to name the
//! receipt as its `cause`, and the receipt would have to contain it: each would hash the other. So the
//! gateway signs the receipt first, then issues each effect with [`Effect::issue`], citing the
//! receipt's CID as the cause.

use std::collections::BTreeMap;
use std::time::Duration;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::{PublicKey, SigningKey};
use crate::ipld::MAX_SAFE_INTEGER;
use crate::ucan::command::Command;
use crate::ucan::envelope::EnvelopeError;
use crate::ucan::error::{ErrorKind, ValidationError};
use crate::ucan::fields::Fields;
use crate::ucan::invocation::{Invocation, InvocationBuilder, task_id};

/// The command every receipt invokes.
pub const ASSERT_COMMAND: &str = "/ucan/assert";
/// Meta key: the backend that ran the task (e.g. `wasm`), a string.
pub const META_BACKEND: &str = "gateway/backend";
/// Meta key: fuel consumed, an integer, when the backend meters it.
pub const META_FUEL: &str = "gateway/fuel";
/// Meta key: wall-clock run time in milliseconds, an integer.
pub const META_DURATION_MS: &str = "gateway/duration_ms";
/// Meta key: the earlier receipt whose output was reused, a link, when the result was memoized.
pub const META_MEMOIZED: &str = "gateway/memoized";

fn malformed(message: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorKind::MalformedToken, message)
}

/// What the task returned: a value, or a named failure. A failed task is an outcome, not an error of
/// the gateway, so it is reported here and signed like any other.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// Success, with the returned value.
    Ok(Ipld),
    /// Failure, with a machine-readable name and a human-readable message.
    Error {
        /// A short, stable name (e.g. `Trap`, `OutOfFuel`).
        name: String,
        /// What happened, for people.
        message: String,
        /// Further fields of the error map beside `name` and `message` (e.g. a promise's
        /// `expected`/`got`/`from`, or a backend's `hint` and `code`); usually empty.
        details: BTreeMap<String, Ipld>,
    },
}

impl Out {
    /// A failure named `name`.
    pub fn error(name: impl Into<String>, message: impl Into<String>) -> Self {
        Out::Error {
            name: name.into(),
            message: message.into(),
            details: BTreeMap::new(),
        }
    }

    /// A failure named `name` with further fields in its error map. `name` and `message` win over
    /// entries of `details` with the same keys.
    pub fn error_with(
        name: impl Into<String>,
        message: impl Into<String>,
        details: BTreeMap<String, Ipld>,
    ) -> Self {
        Out::Error {
            name: name.into(),
            message: message.into(),
            details,
        }
    }

    /// Whether the task succeeded.
    pub fn is_ok(&self) -> bool {
        matches!(self, Out::Ok(_))
    }

    /// The result map: `{"ok": value}` or `{"error": {"name", "message"}}`.
    pub fn to_ipld(&self) -> Ipld {
        let (tag, value) = match self {
            Out::Ok(value) => ("ok", value.clone()),
            Out::Error {
                name,
                message,
                details,
            } => {
                let mut map = details.clone();
                map.insert("name".to_owned(), Ipld::String(name.clone()));
                map.insert("message".to_owned(), Ipld::String(message.clone()));
                ("error", Ipld::Map(map))
            }
        };
        Ipld::Map(BTreeMap::from([(tag.to_owned(), value)]))
    }

    /// Reads a result map. Further fields of an error besides `name` and `message` are kept in
    /// `details`.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ValidationError> {
        let shape = "receipt `out` must be {\"ok\": any} or {\"error\": {\"name\", \"message\"}}";
        let Ipld::Map(map) = value else {
            return Err(malformed(shape));
        };
        let mut entries = map.iter();
        let (Some((tag, inner)), None) = (entries.next(), entries.next()) else {
            return Err(malformed(shape));
        };
        match tag.as_str() {
            "ok" => Ok(Out::Ok(inner.clone())),
            "error" => {
                let f = Fields::new(inner, "receipt `out.error`")?;
                let mut details = f.map.clone();
                details.remove("name");
                details.remove("message");
                Ok(Out::Error {
                    name: f.string("name")?,
                    message: f.string("message")?,
                    details,
                })
            }
            _ => Err(malformed(shape)),
        }
    }
}

/// A task the receipt asks to be run next: the fields of an invocation, unsigned and without a cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// The command to run.
    pub cmd: Command,
    /// The subject.
    pub sub: String,
    /// The arguments.
    pub args: BTreeMap<String, Ipld>,
    /// The nonce (empty for idempotent work).
    pub nonce: Vec<u8>,
    /// Who must issue it, when not whoever issues the effects.
    pub iss: Option<String>,
    /// The executor, when not the subject.
    pub aud: Option<String>,
    /// Metadata for the invocation.
    pub meta: Option<BTreeMap<String, Ipld>>,
    /// Delegations proving the issuer's authority, root first.
    pub prf: Option<Vec<Cid>>,
    /// Expiry of the invocation (Unix seconds).
    pub exp: Option<i64>,
}

impl Effect {
    /// The task id its invocation will have: CID of `{sub, cmd, args, nonce}`.
    pub fn task_id(&self) -> Cid {
        task_id(&self.sub, &self.cmd, &self.args, &self.nonce)
    }

    /// The effect map; absent optional fields are left out.
    pub fn to_ipld(&self) -> Ipld {
        let mut map = BTreeMap::new();
        let mut set = |key: &str, value: Ipld| {
            map.insert(key.to_owned(), value);
        };
        set("cmd", Ipld::String(self.cmd.to_string()));
        set("sub", Ipld::String(self.sub.clone()));
        set("args", Ipld::Map(self.args.clone()));
        set("nonce", Ipld::Bytes(self.nonce.clone()));
        if let Some(iss) = &self.iss {
            set("iss", Ipld::String(iss.clone()));
        }
        if let Some(aud) = &self.aud {
            set("aud", Ipld::String(aud.clone()));
        }
        if let Some(meta) = &self.meta {
            set("meta", Ipld::Map(meta.clone()));
        }
        if let Some(prf) = &self.prf {
            set(
                "prf",
                Ipld::List(prf.iter().copied().map(Ipld::Link).collect()),
            );
        }
        if let Some(exp) = self.exp {
            set("exp", Ipld::Integer(exp.into()));
        }
        Ipld::Map(map)
    }

    /// Reads an effect map. Unknown fields are ignored, except `cause`: an effect is caused by the
    /// receipt that holds it, and only [`Effect::issue`] can name that.
    pub fn from_ipld(value: &Ipld) -> Result<Self, ValidationError> {
        let f = Fields::new(value, "effect")?;
        if f.map.contains_key("cause") {
            return Err(malformed(
                "an effect must not carry a `cause`; it is set when the effect is issued",
            ));
        }
        let cmd = f.string("cmd")?;
        let cmd =
            Command::parse(&cmd).map_err(|e| malformed(format!("effect field `cmd`: {e}")))?;
        let prf = match f.map.get("prf") {
            None => None,
            Some(Ipld::List(items)) => Some(
                items
                    .iter()
                    .map(|item| match item {
                        Ipld::Link(cid) => Ok(*cid),
                        _ => Err(f.wrong("prf", "a list of CID links")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(f.wrong("prf", "a list of CID links")),
        };
        let exp = match f.map.get("exp") {
            None => None,
            Some(Ipld::Integer(n)) => {
                Some(i64::try_from(*n).map_err(|_| f.wrong("exp", "a 53-bit integer"))?)
            }
            Some(_) => return Err(f.wrong("exp", "an integer")),
        };
        Ok(Effect {
            cmd,
            sub: f.string("sub")?,
            args: f.map("args")?.clone(),
            nonce: match f.required("nonce")? {
                Ipld::Bytes(b) => b.clone(),
                _ => return Err(f.wrong("nonce", "bytes")),
            },
            iss: f.opt_string("iss")?,
            aud: f.opt_string("aud")?,
            meta: f.opt_map("meta")?.cloned(),
            prf,
            exp,
        })
    }

    /// Signs the effect as an invocation by `signer`, caused by the receipt `cause`. All fields are
    /// copied; an `iss` in the effect must be the signer's DID. Fails with `InvalidAudience` otherwise:
    /// the effect is addressed to another principal, the same misalignment the spec names for a
    /// delegation handed to the wrong issuer.
    pub fn issue(&self, cause: Cid, signer: &SigningKey) -> Result<Invocation, ValidationError> {
        if let Some(iss) = &self.iss {
            let did = signer.did();
            if principal(iss) != principal(&did) {
                return Err(ValidationError::new(
                    ErrorKind::InvalidAudience,
                    format!("the effect is to be issued by {iss}, not by {did}"),
                ));
            }
        }
        let mut builder =
            InvocationBuilder::new(self.sub.clone(), self.cmd.clone(), self.args.clone())
                .nonce(self.nonce.clone())
                .expires(self.exp)
                .cause(cause);
        if let Some(aud) = &self.aud {
            builder = builder.audience(aud.clone());
        }
        if let Some(meta) = &self.meta {
            builder = builder.meta(meta.clone());
        }
        if let Some(prf) = &self.prf {
            builder = builder.proofs(prf.clone());
        }
        builder.sign(signer)
    }
}

/// The tasks a receipt asks for: `fork` to run concurrently, then `join` to continue with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    /// Tasks to run concurrently.
    pub fork: Vec<Effect>,
    /// The continuation, if any.
    pub join: Option<Effect>,
}

impl Effects {
    /// Whether no task is asked for (always so for pure work).
    pub fn is_empty(&self) -> bool {
        self.fork.is_empty() && self.join.is_none()
    }

    /// The `fx` map.
    pub fn to_ipld(&self) -> Ipld {
        let mut map = BTreeMap::from([(
            "fork".to_owned(),
            Ipld::List(self.fork.iter().map(Effect::to_ipld).collect()),
        )]);
        if let Some(join) = &self.join {
            map.insert("join".to_owned(), join.to_ipld());
        }
        Ipld::Map(map)
    }

    /// Reads an `fx` map (`join` may be absent or `null`).
    pub fn from_ipld(value: &Ipld) -> Result<Self, ValidationError> {
        let f = Fields::new(value, "receipt `fx`")?;
        let fork = match f.required("fork")? {
            Ipld::List(items) => items
                .iter()
                .map(Effect::from_ipld)
                .collect::<Result<_, _>>()?,
            _ => return Err(f.wrong("fork", "a list of effects")),
        };
        let join = match f.map.get("join") {
            None | Some(Ipld::Null) => None,
            Some(effect) => Some(Effect::from_ipld(effect)?),
        };
        Ok(Effects { fork, join })
    }
}

/// What a receipt asserts.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptBody {
    /// The invocation answered.
    pub ran: Cid,
    /// Its task id.
    pub task: Cid,
    /// The outcome.
    pub out: Out,
    /// Tasks asked for next.
    pub fx: Effects,
    /// Receipt metadata (see the `META_*` keys); not part of the assertion's meaning.
    pub meta: BTreeMap<String, Ipld>,
}

impl ReceiptBody {
    /// The receipt invocation's `args`: `{ran, task, out, fx}`.
    pub fn to_args(&self) -> BTreeMap<String, Ipld> {
        BTreeMap::from([
            ("ran".to_owned(), Ipld::Link(self.ran)),
            ("task".to_owned(), Ipld::Link(self.task)),
            ("out".to_owned(), self.out.to_ipld()),
            ("fx".to_owned(), self.fx.to_ipld()),
        ])
    }

    /// Reads a body from a receipt invocation's `args` and `meta`. Unknown `args` fields are ignored.
    pub fn from_args(
        args: &BTreeMap<String, Ipld>,
        meta: Option<&BTreeMap<String, Ipld>>,
    ) -> Result<Self, ValidationError> {
        let f = Fields::of_map(args, "receipt `args`");
        Ok(ReceiptBody {
            ran: f.link("ran")?,
            task: f.link("task")?,
            out: Out::from_ipld(f.required("out")?)?,
            fx: Effects::from_ipld(f.required("fx")?)?,
            meta: meta.cloned().unwrap_or_default(),
        })
    }
}

/// Receipt metadata as the gateway writes it. Integers are capped at 2^53 − 1, the largest a token
/// may carry, so building a receipt never fails on a long run or a large fuel count.
pub fn gateway_meta(
    backend: &str,
    fuel: Option<u64>,
    duration: Duration,
    memoized: Option<Cid>,
) -> BTreeMap<String, Ipld> {
    let int = |n: u64| Ipld::Integer(n.min(MAX_SAFE_INTEGER).into());
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let mut meta = BTreeMap::from([
        (META_BACKEND.to_owned(), Ipld::String(backend.to_owned())),
        (META_DURATION_MS.to_owned(), int(millis)),
    ]);
    if let Some(fuel) = fuel {
        meta.insert(META_FUEL.to_owned(), int(fuel));
    }
    if let Some(receipt) = memoized {
        meta.insert(META_MEMOIZED.to_owned(), Ipld::Link(receipt));
    }
    meta
}

/// A signed receipt: the `/ucan/assert` invocation and the body read from it.
///
/// Like [`Invocation`], a `Receipt` is trusted to hold the decoded form of its own bytes; build one
/// only with [`Receipt::issue`], [`Receipt::decode`] or [`Receipt::from_invocation`].
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The signed invocation.
    pub invocation: Invocation,
    /// What it asserts.
    pub body: ReceiptBody,
}

impl Receipt {
    /// Signs `body` as a receipt of the gateway `gateway`.
    pub fn issue(body: ReceiptBody, gateway: &SigningKey) -> Result<Receipt, ValidationError> {
        let did = gateway.did();
        let mut builder = InvocationBuilder::new(did.clone(), assert_command()?, body.to_args())
            .audience(did)
            .expires(None);
        // An empty meta is left out rather than written as `{}`: receipts go out on every request.
        if !body.meta.is_empty() {
            builder = builder.meta(body.meta.clone());
        }
        let invocation = builder.sign(gateway)?;
        Ok(Receipt { invocation, body })
    }

    /// Decodes receipt bytes (see [`Receipt::from_invocation`]). The signature is checked by
    /// [`Receipt::verify`], not here.
    pub fn decode(bytes: &[u8]) -> Result<Receipt, ValidationError> {
        Self::from_invocation(Invocation::decode(bytes)?)
    }

    /// Reads an invocation as a receipt: its command must be `/ucan/assert`, its `iss`, `sub` and
    /// `aud` the same principal, and its `args` a well-formed body. Anything else is `MalformedToken`.
    pub fn from_invocation(invocation: Invocation) -> Result<Receipt, ValidationError> {
        let p = &invocation.payload;
        if p.cmd.as_str() != ASSERT_COMMAND {
            return Err(malformed(format!(
                "a receipt invokes {ASSERT_COMMAND}, not {}",
                p.cmd
            )));
        }
        check_principals(&invocation)?;
        let body = ReceiptBody::from_args(&p.args, p.meta.as_ref())?;
        Ok(Receipt { invocation, body })
    }

    /// Checks that the receipt is well formed (`iss = sub = aud`), that its signature verifies against
    /// its issuer (`InvalidSignature`), and, if `expected_issuer` is given, that the issuer is that
    /// principal.
    ///
    /// A different issuer is `InvalidAudience`: the executor of an invocation is its audience, and the
    /// receipt spec requires the receipt's issuer to be that executor. That is the principal
    /// alignment rule (one token's `aud` is the next token's `iss`), whose failure the spec calls
    /// `InvalidAudience`; the signature itself is sound, so `InvalidSignature` would mislead. As in
    /// validation, a bad signature is reported before anything about the contents.
    pub fn verify(&self, expected_issuer: Option<&str>) -> Result<(), ValidationError> {
        check_principals(&self.invocation)?;
        let iss = &self.invocation.payload.iss;
        let invalid = |message: String| ValidationError::new(ErrorKind::InvalidSignature, message);
        let key = PublicKey::from_did(iss).map_err(|e| invalid(format!("issuer key: {e}")))?;
        self.invocation.envelope.verify(&key).map_err(|e| match e {
            EnvelopeError::InvalidSignature => {
                invalid(format!("receipt signature by {iss} does not verify"))
            }
            other => invalid(other.to_string()),
        })?;
        if let Some(expected) = expected_issuer
            && principal(expected) != principal(iss)
        {
            return Err(ValidationError::new(
                ErrorKind::InvalidAudience,
                format!("the receipt is issued by {iss}, not by the executor {expected}"),
            ));
        }
        Ok(())
    }

    /// The receipt's CID.
    pub fn cid(&self) -> Cid {
        self.invocation.cid()
    }

    /// The encoded receipt.
    pub fn bytes(&self) -> &[u8] {
        self.invocation.bytes()
    }

    /// A view for people and scripts: `cid`, `ran` and `task` as CID strings, `out`, `fx` and `meta`
    /// in DAG-JSON form, the issuer, and `fx_tasks`: the task id of each effect (`{fork: [..],
    /// join}`), under which its receipt will be found.
    pub fn to_json(&self) -> serde_json::Value {
        let p = &self.invocation.payload;
        // `out` and `fx` are shown exactly as signed, borrowed from the payload rather than rebuilt.
        let arg = |key: &str| p.args.get(key).map_or(serde_json::Value::Null, ipld_json);
        let meta = p.meta.as_ref().map_or_else(
            || serde_json::Value::Object(serde_json::Map::new()),
            ipld_json,
        );
        serde_json::json!({
            "cid": self.cid().to_string(),
            "iss": p.iss,
            "ran": self.body.ran.to_string(),
            "task": self.body.task.to_string(),
            "out": arg("out"),
            "fx": arg("fx"),
            // An effect's receipt is stored under its task id, which a reader cannot easily compute.
            "fx_tasks": {
                "fork": self.body.fx.fork.iter().map(|e| e.task_id().to_string()).collect::<Vec<_>>(),
                "join": self.body.fx.join.as_ref().map(|e| e.task_id().to_string()),
            },
            "meta": meta,
        })
    }
}

fn assert_command() -> Result<Command, ValidationError> {
    Command::parse(ASSERT_COMMAND).map_err(|e| malformed(e.to_string()))
}

/// A DID without its URL fragment: principals are compared without fragments, as in validation.
fn principal(did: &str) -> &str {
    did.split_once('#').map_or(did, |(base, _)| base)
}

/// The receipt spec's loop: issued by the executor, about the executor, to the executor.
fn check_principals(invocation: &Invocation) -> Result<(), ValidationError> {
    let p = &invocation.payload;
    let iss = principal(&p.iss);
    if principal(&p.sub) != iss {
        return Err(malformed(format!(
            "receipt subject {} is not its issuer {}",
            p.sub, p.iss
        )));
    }
    match &p.aud {
        Some(aud) if principal(aud) == iss => Ok(()),
        Some(aud) => Err(malformed(format!(
            "receipt audience {aud} is not its issuer {}",
            p.iss
        ))),
        None => Err(malformed("a receipt must name its issuer as `aud`")),
    }
}

/// DAG-JSON of `value` as a JSON value; a value DAG-JSON cannot express (a non-finite float, never
/// found in a decoded token) is shown as a note instead.
fn ipld_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_ipld_dagjson::to_vec(value)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_slice(&text).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| serde_json::Value::String(format!("<not representable: {e}>")))
}
