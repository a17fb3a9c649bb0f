//! Reading typed fields out of a token payload map, with `MalformedToken` errors that name the field.
//! Shared by delegations, invocations and receipts so all read (and reject) fields the same way.

use std::collections::BTreeMap;

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::ucan::command::Command;
use crate::ucan::error::{ErrorKind, ValidationError};

/// A payload map being read field by field.
pub(crate) struct Fields<'a> {
    /// The map being read, for fields that need more than the typed readers below.
    pub(crate) map: &'a BTreeMap<String, Ipld>,
    what: &'static str,
}

fn malformed(msg: String) -> ValidationError {
    ValidationError::new(ErrorKind::MalformedToken, msg)
}

impl<'a> Fields<'a> {
    /// Starts reading `payload`, which must be a map; `what` names the token kind in messages.
    pub(crate) fn new(payload: &'a Ipld, what: &'static str) -> Result<Self, ValidationError> {
        match payload {
            Ipld::Map(map) => Ok(Fields { map, what }),
            _ => Err(malformed(format!("{what} must be a map"))),
        }
    }

    /// Starts reading a map that is already known to be one.
    pub(crate) fn of_map(map: &'a BTreeMap<String, Ipld>, what: &'static str) -> Self {
        Fields { map, what }
    }

    /// The error for a field of the wrong type.
    pub(crate) fn wrong(&self, field: &str, expected: &str) -> ValidationError {
        malformed(format!("{} field `{field}` must be {expected}", self.what))
    }

    /// A required field of any type.
    pub(crate) fn required(&self, field: &str) -> Result<&'a Ipld, ValidationError> {
        self.map
            .get(field)
            .ok_or_else(|| malformed(format!("{} is missing required field `{field}`", self.what)))
    }

    /// A required string.
    pub(crate) fn string(&self, field: &str) -> Result<String, ValidationError> {
        match self.required(field)? {
            Ipld::String(s) => Ok(s.clone()),
            _ => Err(self.wrong(field, "a string")),
        }
    }

    /// An optional string.
    pub(crate) fn opt_string(&self, field: &str) -> Result<Option<String>, ValidationError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Ipld::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(field, "a string")),
        }
    }

    /// A required field that is a string or `null`.
    pub(crate) fn nullable_string(&self, field: &str) -> Result<Option<String>, ValidationError> {
        match self.required(field)? {
            Ipld::String(s) => Ok(Some(s.clone())),
            Ipld::Null => Ok(None),
            _ => Err(self.wrong(field, "a string or null")),
        }
    }

    /// A required command.
    pub(crate) fn command(&self, field: &str) -> Result<Command, ValidationError> {
        let text = self.string(field)?;
        Command::parse(&text).map_err(|e| malformed(format!("{} field `{field}`: {e}", self.what)))
    }

    /// Required bytes.
    pub(crate) fn bytes(&self, field: &str) -> Result<Vec<u8>, ValidationError> {
        match self.required(field)? {
            Ipld::Bytes(b) => Ok(b.clone()),
            _ => Err(self.wrong(field, "bytes")),
        }
    }

    /// An optional timestamp (integer seconds); the envelope decoder has already bounded its range.
    pub(crate) fn opt_int(&self, field: &str) -> Result<Option<i64>, ValidationError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Ipld::Integer(i)) => i64::try_from(*i)
                .map(Some)
                .map_err(|_| self.wrong(field, "a 53-bit integer")),
            Some(_) => Err(self.wrong(field, "an integer")),
        }
    }

    /// An expiry: an integer, or `null` / absent for "never".
    pub(crate) fn expiry(&self, field: &str) -> Result<Option<i64>, ValidationError> {
        match self.map.get(field) {
            None | Some(Ipld::Null) => Ok(None),
            Some(_) => self.opt_int(field),
        }
    }

    /// An optional string-keyed map.
    pub(crate) fn opt_map(
        &self,
        field: &str,
    ) -> Result<Option<&'a BTreeMap<String, Ipld>>, ValidationError> {
        match self.map.get(field) {
            None => Ok(None),
            Some(Ipld::Map(m)) => Ok(Some(m)),
            Some(_) => Err(self.wrong(field, "a map")),
        }
    }

    /// A required string-keyed map.
    pub(crate) fn map(&self, field: &str) -> Result<&'a BTreeMap<String, Ipld>, ValidationError> {
        match self.required(field)? {
            Ipld::Map(m) => Ok(m),
            _ => Err(self.wrong(field, "a map")),
        }
    }

    /// A required CID link.
    pub(crate) fn link(&self, field: &str) -> Result<Cid, ValidationError> {
        match self.required(field)? {
            Ipld::Link(cid) => Ok(*cid),
            _ => Err(self.wrong(field, "a CID link")),
        }
    }

    /// A required list of CID links.
    pub(crate) fn links(&self, field: &str) -> Result<Vec<Cid>, ValidationError> {
        match self.required(field)? {
            Ipld::List(items) => items
                .iter()
                .map(|item| match item {
                    Ipld::Link(cid) => Ok(*cid),
                    _ => Err(self.wrong(field, "a list of CID links")),
                })
                .collect(),
            _ => Err(self.wrong(field, "a list of CID links")),
        }
    }

    /// An optional CID link.
    pub(crate) fn opt_link(&self, field: &str) -> Result<Option<Cid>, ValidationError> {
        match self.map.get(field) {
            None | Some(Ipld::Null) => Ok(None),
            Some(Ipld::Link(cid)) => Ok(Some(*cid)),
            Some(_) => Err(self.wrong(field, "a CID link")),
        }
    }

    /// The raw value of a required field.
    pub(crate) fn raw(&self, field: &str) -> Result<&'a Ipld, ValidationError> {
        self.required(field)
    }
}

/// Builds a payload map, skipping absent optional fields.
#[derive(Default)]
pub(crate) struct MapBuilder(BTreeMap<String, Ipld>);

impl MapBuilder {
    pub(crate) fn set(mut self, key: &str, value: Ipld) -> Self {
        self.0.insert(key.to_owned(), value);
        self
    }

    pub(crate) fn opt(self, key: &str, value: Option<Ipld>) -> Self {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    pub(crate) fn build(self) -> Ipld {
        Ipld::Map(self.0)
    }
}

/// `Some(t)` → integer, `None` → null (for required-nullable fields like `exp`).
pub(crate) fn int_or_null(value: Option<i64>) -> Ipld {
    value.map_or(Ipld::Null, |v| Ipld::Integer(v.into()))
}

/// Twelve random bytes from the OS, the nonce length deployed libraries use.
pub(crate) fn random_nonce() -> Vec<u8> {
    use rand_core::{OsRng, RngCore};
    let mut nonce = vec![0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    nonce
}
