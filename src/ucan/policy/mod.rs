//! The UCAN policy language (`pol`): a list of statements, implicitly and-ed, each a predicate over an
//! invocation's `args`, with jq-like selectors.
//!
//! - `selector`: parsing and resolving selectors (`.`, `.a`, `["a"]`, `[i]`, `[-i]`, `[]`, slices, `?`).
//! - `glob`: the `like` operator's `*` wildcard with `\*` escapes.
//! - `eval`: evaluation with the spec's semantics (unresolvable → false, never an exception).
//!
//! Parsing rejects malformed policies with a [`PolicyError`] that says where; evaluation never fails,
//! it only answers whether `args` pass, and if not, which top-level statement did not hold.

use ipld_core::ipld::Ipld;

/// A parsed policy: the top-level statements, all of which must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    // Filled in by the policy implementation.
}

/// Why a policy could not be parsed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("malformed policy at {path}: {reason}")]
pub struct PolicyError {
    /// Where in the policy the problem is, e.g. `[2][1]` (statement 2, its second element).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// The first top-level statement that did not hold, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Index of the failing top-level statement.
    pub index: usize,
    /// The statement as DAG-JSON text.
    pub statement: String,
}

impl Policy {
    /// The empty policy, which every `args` value passes.
    pub fn empty() -> Self {
        todo!()
    }

    /// Parses a policy from its IPLD form (a list of statements).
    pub fn parse(value: &Ipld) -> Result<Self, PolicyError> {
        todo!("{value:?}")
    }

    /// Parses a policy from DAG-JSON text (as given on the command line or in operator files).
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        todo!("{text}")
    }

    /// The IPLD form, such that `parse(to_ipld())` gives back an equal policy.
    pub fn to_ipld(&self) -> Ipld {
        todo!()
    }

    /// Whether `args` pass every statement; if not, the first that fails.
    pub fn check(&self, args: &Ipld) -> Result<(), Mismatch> {
        todo!("{args:?}")
    }

    /// True when there are no statements.
    pub fn is_empty(&self) -> bool {
        todo!()
    }
}
