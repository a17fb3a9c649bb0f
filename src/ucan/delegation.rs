//! Delegation tokens (`ucan/dlg@1.0.0`): an issuer grants an audience the authority to run a command
//! (and everything below it) on a subject, constrained by a policy and a validity window.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::did::SigningKey;
use crate::ucan::command::Command;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::error::{ErrorKind, ValidationError};
use crate::ucan::fields::{Fields, MapBuilder, int_or_null, random_nonce};
use crate::ucan::policy::Policy;

/// The fields of a delegation payload.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationPayload {
    /// Issuer (delegator).
    pub iss: String,
    /// Audience (delegate).
    pub aud: String,
    /// Subject; `None` is a powerline (`sub: null`), valid only below the root.
    pub sub: Option<String>,
    /// The delegated command.
    pub cmd: Command,
    /// The policy every eventual invocation's `args` must pass.
    pub pol: Policy,
    /// Nonce bytes.
    pub nonce: Vec<u8>,
    /// Signed metadata; not authority.
    pub meta: Option<BTreeMap<String, Ipld>>,
    /// Not before (Unix seconds).
    pub nbf: Option<i64>,
    /// Expiry (Unix seconds); `None` is `null`, never expires.
    pub exp: Option<i64>,
}

impl DelegationPayload {
    /// Reads a payload map. Unknown fields are ignored, so later spec additions do not break us.
    pub fn from_ipld(payload: &Ipld) -> Result<Self, ValidationError> {
        let f = Fields::new(payload, "delegation")?;
        let pol = Policy::parse(f.raw("pol")?)
            .map_err(|e| ValidationError::new(e.kind, format!("delegation field `pol`: {e}")))?;
        Ok(DelegationPayload {
            iss: f.string("iss")?,
            aud: f.string("aud")?,
            sub: f.nullable_string("sub")?,
            cmd: f.command("cmd")?,
            pol,
            nonce: f.bytes("nonce")?,
            meta: f.opt_map("meta")?.cloned(),
            nbf: f.opt_int("nbf")?,
            exp: f.expiry("exp")?,
        })
    }

    /// The payload map.
    pub fn to_ipld(&self) -> Ipld {
        MapBuilder::default()
            .set("iss", Ipld::String(self.iss.clone()))
            .set("aud", Ipld::String(self.aud.clone()))
            .set("sub", self.sub.clone().map_or(Ipld::Null, Ipld::String))
            .set("cmd", Ipld::String(self.cmd.to_string()))
            .set("pol", self.pol.to_ipld())
            .set("nonce", Ipld::Bytes(self.nonce.clone()))
            .opt("meta", self.meta.clone().map(Ipld::Map))
            .opt("nbf", self.nbf.map(|t| Ipld::Integer(t.into())))
            .set("exp", int_or_null(self.exp))
            .build()
    }
}

/// A decoded delegation: its envelope (bytes, CID, signature) and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegation {
    /// The signed envelope.
    pub envelope: Envelope,
    /// The decoded payload.
    pub payload: DelegationPayload,
}

impl Delegation {
    /// Decodes token bytes. The signature is not checked here; [`crate::ucan::validate`] does that.
    pub fn decode(bytes: &[u8]) -> Result<Self, ValidationError> {
        let envelope = Envelope::decode(bytes)?;
        Self::from_envelope(envelope)
    }

    /// Reads a decoded envelope as a delegation.
    pub fn from_envelope(envelope: Envelope) -> Result<Self, ValidationError> {
        if envelope.kind != Kind::Delegation {
            return Err(ValidationError::new(
                ErrorKind::MalformedToken,
                format!("token {} is not a delegation", envelope.cid),
            ));
        }
        let payload = DelegationPayload::from_ipld(&envelope.payload)?;
        Ok(Delegation { envelope, payload })
    }

    /// The delegation's CID.
    pub fn cid(&self) -> Cid {
        self.envelope.cid
    }

    /// The encoded token.
    pub fn bytes(&self) -> &[u8] {
        &self.envelope.bytes
    }
}

/// Builds and signs a delegation.
#[derive(Debug, Clone)]
pub struct DelegationBuilder {
    aud: String,
    sub: Option<String>,
    cmd: Command,
    pol: Policy,
    nonce: Option<Vec<u8>>,
    meta: Option<BTreeMap<String, Ipld>>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

impl DelegationBuilder {
    /// A delegation of `cmd` on `sub` (`None` for a powerline) to `aud`, with an empty policy, no time
    /// bounds and a random nonce until told otherwise.
    pub fn new(aud: impl Into<String>, sub: Option<String>, cmd: Command) -> Self {
        DelegationBuilder {
            aud: aud.into(),
            sub,
            cmd,
            pol: Policy::empty(),
            nonce: None,
            meta: None,
            nbf: None,
            exp: None,
        }
    }

    /// Sets the policy.
    pub fn policy(mut self, pol: Policy) -> Self {
        self.pol = pol;
        self
    }

    /// Sets the expiry (`None`: never).
    pub fn expires(mut self, exp: Option<i64>) -> Self {
        self.exp = exp;
        self
    }

    /// Sets "not before".
    pub fn not_before(mut self, nbf: Option<i64>) -> Self {
        self.nbf = nbf;
        self
    }

    /// Sets the metadata map.
    pub fn meta(mut self, meta: BTreeMap<String, Ipld>) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Sets a fixed nonce (for reproducible tokens).
    pub fn nonce(mut self, nonce: Vec<u8>) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Signs with `issuer`, whose DID becomes `iss`.
    pub fn sign(self, issuer: &SigningKey) -> Result<Delegation, ValidationError> {
        let payload = DelegationPayload {
            iss: issuer.did(),
            aud: self.aud,
            sub: self.sub,
            cmd: self.cmd,
            pol: self.pol,
            nonce: self.nonce.unwrap_or_else(random_nonce),
            meta: self.meta,
            nbf: self.nbf,
            exp: self.exp,
        };
        let envelope = Envelope::sign(Kind::Delegation, payload.to_ipld(), issuer)
            .map_err(|e| ValidationError::new(ErrorKind::MalformedToken, e.to_string()))?;
        Ok(Delegation { envelope, payload })
    }
}
