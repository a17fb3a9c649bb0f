//! The UCAN policy language (`pol`): a list of statements, implicitly and-ed, each a predicate over an
//! invocation's `args`, with jq-like selectors.
//!
//! - `statement`: the statement tree and its IPLD form; parsing bounds nesting depth.
//! - `selector`: parsing and resolving selectors (`.`, `.a`, `["a"]`, `[i]`, `[-i]`, `[]`, slices, `?`).
//! - `glob`: the `like` operator's `*` wildcard with `\*` escapes.
//! - `eval`: evaluation with the spec's semantics (unresolvable → false, never an exception).
//!
//! Parsing rejects malformed policies with a [`PolicyError`] that says where; evaluation never fails,
//! it only answers whether `args` pass, and if not, which top-level statement did not hold.
//!
//! Policies arrive in untrusted tokens, so every walk over them is bounded: statement nesting by
//! [`MAX_DEPTH`], literal values by [`MAX_LITERAL_DEPTH`], selectors by [`MAX_SELECTOR_LEN`], and
//! the work of one check by [`MAX_STEPS`].
//!
//! Where the spec leaves room, we chose (and the submodules explain why): `[]` in a selector sends
//! each child through the rest of the selector and collects the results into one list, which
//! predicates then see as a list value; `!=` is false, like every statement, when its selector cannot
//! be resolved; numbers compare by value across int and float, also inside `==` on lists and maps.

mod eval;
mod glob;
mod selector;
mod statement;

use std::fmt;

use ipld_core::ipld::Ipld;

use crate::ucan::ErrorKind;
pub use eval::MAX_STEPS;
pub use selector::MAX_SELECTOR_LEN;

use selector::Item;
use statement::Statement;

/// Deepest statement nesting accepted (a top-level statement is depth 1; each `not`, `and`, `or`,
/// `all` or `any` adds one). Evaluation recurses along the tree, so this bounds its stack use.
pub const MAX_DEPTH: usize = 32;

/// Deepest nesting accepted inside the value of an `==` or `!=` (a scalar is depth 1), since deep
/// equality recurses along it.
pub const MAX_LITERAL_DEPTH: usize = 64;

/// A parsed policy: the top-level statements, all of which must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// Why a policy could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// Where in the policy the problem is, e.g. `[2][1]` (statement 2, its second element).
    pub path: String,
    /// What is wrong.
    pub reason: String,
    /// How a token carrying the policy is refused: [`ErrorKind::MalformedToken`], or the name of
    /// the limit it exceeds ([`ErrorKind::PolicyTooDeep`], [`ErrorKind::SelectorTooLong`]).
    pub kind: ErrorKind,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.is_limit() {
            write!(f, "{}: policy at {}: {}", self.kind, self.path, self.reason)
        } else {
            write!(f, "malformed policy at {}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for PolicyError {}

/// The first top-level statement that did not hold, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Index of the failing top-level statement.
    pub index: usize,
    /// The statement as DAG-JSON text.
    pub statement: String,
    /// Whether the check ran out of its [`MAX_STEPS`] budget at this statement, rather than
    /// finding it false.
    pub exhausted: bool,
}

impl Mismatch {
    /// How the failure is named: [`ErrorKind::MatchError`] for a statement that is false,
    /// [`ErrorKind::PolicyTooComplex`] for one the budget could not afford to decide.
    pub fn kind(&self) -> ErrorKind {
        if self.exhausted {
            ErrorKind::PolicyTooComplex
        } else {
            ErrorKind::MatchError
        }
    }
}

/// `statement N: <statement>`, or for an exhausted budget `statement N: … takes more than
/// MAX_STEPS evaluation steps; at most MAX_STEPS`.
impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "statement {}: {}", self.index, self.statement)?;
        if self.exhausted {
            write!(
                f,
                " takes more than {MAX_STEPS} evaluation steps; at most {MAX_STEPS}"
            )?;
        }
        Ok(())
    }
}

impl Policy {
    /// The empty policy, which every `args` value passes.
    pub fn empty() -> Self {
        Self {
            statements: Vec::new(),
        }
    }

    /// Parses a policy from its IPLD form (a list of statements).
    pub fn parse(value: &Ipld) -> Result<Self, PolicyError> {
        statement::parse_policy(value).map(|statements| Self { statements })
    }

    /// Parses a policy from DAG-JSON text (as given on the command line or in operator files).
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let value = crate::ipld::from_dag_json(text).map_err(|e| PolicyError {
            path: "top level".to_owned(),
            reason: format!("not valid DAG-JSON: {e}"),
            kind: ErrorKind::MalformedToken,
        })?;
        Self::parse(&value)
    }

    /// The IPLD form, such that `parse(to_ipld())` gives back an equal policy.
    pub fn to_ipld(&self) -> Ipld {
        Ipld::List(self.statements.iter().map(Statement::to_ipld).collect())
    }

    /// Whether `args` pass every statement; if not, the first that fails.
    ///
    /// A check that exceeds [`MAX_STEPS`] fails at the statement being evaluated when the budget ran
    /// out: an answer we could not afford to compute is not a pass.
    pub fn check(&self, args: &Ipld) -> Result<(), Mismatch> {
        let mut budget = eval::Budget::new();
        for (index, statement) in self.statements.iter().enumerate() {
            let held = eval::holds(statement, Item::Node(args), &mut budget);
            if held != Ok(true) {
                return Err(Mismatch {
                    index,
                    statement: dag_json(&statement.to_ipld()),
                    exhausted: held.is_err(),
                });
            }
        }
        Ok(())
    }

    /// True when there are no statements.
    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

impl Default for Policy {
    /// The empty policy.
    fn default() -> Self {
        Self::empty()
    }
}

/// The policy as DAG-JSON text, in canonical form (selectors printed canonically).
impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&dag_json(&self.to_ipld()))
    }
}

/// DAG-JSON text of a policy value. Parsed policies only hold finite numbers, which always encode;
/// the debug form is a fallback that keeps error reporting infallible.
fn dag_json(value: &Ipld) -> String {
    crate::ipld::to_dag_json(value).unwrap_or_else(|_| format!("{value:?}"))
}
