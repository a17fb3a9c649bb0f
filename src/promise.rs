//! Promises ([UCAN Promise](https://github.com/ucan-wg/promise)): a value in an invocation's
//! `args` that stands for the result of another task, written as a map with one key naming the
//! branch awaited and a link to the task (or invocation) whose receipt holds it:
//!
//! ```text
//! {"await/ok": &Task}     the `ok` value, unwrapped
//! {"await/error": &Task}  the `error` value, unwrapped
//! {"await/*": &Task}      the whole result, `{"ok": …}` or `{"error": …}`
//! ```
//!
//! This module only finds promises and substitutes results; where results come from (the store, or
//! an earlier invocation of the same request) is the gateway's business. Pure functions, no I/O.

use std::collections::{BTreeMap, HashMap};

use cid::Cid;
use ipld_core::ipld::Ipld;

use crate::ipld::rewrite_map;
use crate::receipt::Out;

/// Which branch of a result a promise waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Branch {
    /// `await/ok`: only a success, whose value is substituted.
    Ok,
    /// `await/error`: only a failure, whose error map is substituted.
    Error,
    /// `await/*`: either; the whole result map is substituted.
    Any,
}

impl Branch {
    /// The tag as written in `args`.
    pub fn tag(self) -> &'static str {
        match self {
            Branch::Ok => "await/ok",
            Branch::Error => "await/error",
            Branch::Any => "await/*",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "await/ok" => Some(Branch::Ok),
            "await/error" => Some(Branch::Error),
            "await/*" => Some(Branch::Any),
            _ => None,
        }
    }
}

/// One promise found in `args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Promise {
    /// The branch awaited.
    pub branch: Branch,
    /// The task id (or invocation CID) whose result is awaited.
    pub target: Cid,
}

/// Reads `value` as a promise: a map with exactly one entry, an `await/…` tag and a link.
pub fn as_promise(value: &Ipld) -> Option<Promise> {
    let Ipld::Map(map) = value else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    let (tag, target) = map.iter().next()?;
    match (Branch::from_tag(tag), target) {
        (Some(branch), Ipld::Link(target)) => Some(Promise {
            branch,
            target: *target,
        }),
        _ => None,
    }
}

/// Every promise in `args`, in order of first appearance, each once.
///
/// Runs on every request, so it only reads: an explicit stack of references (no recursion on
/// untrusted depth, and no copy of the arguments, which may hold a whole module).
pub fn promises(args: &BTreeMap<String, Ipld>) -> Vec<Promise> {
    let mut found = Vec::new();
    let mut stack: Vec<&Ipld> = args.values().rev().collect();
    while let Some(node) = stack.pop() {
        if let Some(promise) = as_promise(node) {
            if !found.contains(&promise) {
                found.push(promise);
            }
            continue;
        }
        match node {
            Ipld::List(items) => stack.extend(items.iter().rev()),
            Ipld::Map(map) => stack.extend(map.values().rev()),
            _ => {}
        }
    }
    found
}

/// The result a promise resolves against: the awaited task's outcome and the receipt stating it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The task's outcome.
    pub out: Out,
    /// The receipt it comes from, cited when the branch does not match.
    pub receipt: Cid,
}

/// Why promises could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromiseError {
    /// The awaited result took the other branch (promise spec 3.2).
    #[error(
        "branch mismatch: awaited {} of {}, which ended in {} (receipt {})",
        .0.expected, .0.target, .0.got, .0.from
    )]
    BranchMismatch(Box<Mismatch>),
    /// No result is known for the awaited task.
    #[error("no result is known for {0}")]
    Unresolved(Cid),
}

/// The details of a branch mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The task awaited.
    pub target: Cid,
    /// The branch the promise waited for: `ok` or `error`.
    pub expected: &'static str,
    /// The branch the result took.
    pub got: &'static str,
    /// The receipt holding the result.
    pub from: Cid,
}

impl PromiseError {
    /// The error a receipt carries for this failure. A branch mismatch has the spec's fields
    /// (`reason`, `expected`, `got`, `from`) beside `name` and `message`.
    pub fn to_out(&self) -> Out {
        match self {
            PromiseError::BranchMismatch(m) => Out::error_with(
                "BranchMismatch",
                self.to_string(),
                BTreeMap::from([
                    ("reason".to_owned(), Ipld::String("branch mismatch".into())),
                    ("expected".to_owned(), Ipld::String(m.expected.into())),
                    ("got".to_owned(), Ipld::String(m.got.into())),
                    ("from".to_owned(), Ipld::Link(m.from)),
                ]),
            ),
            PromiseError::Unresolved(_) => Out::error("UnresolvedPromise", self.to_string()),
        }
    }
}

/// `args` with every promise replaced by the value it awaits, taken from `results` (keyed by the
/// promise's target). Fails on the first promise without a result or with the wrong branch.
pub fn resolve(
    args: &BTreeMap<String, Ipld>,
    results: &HashMap<Cid, Resolved>,
) -> Result<BTreeMap<String, Ipld>, PromiseError> {
    let mut failure = None;
    let resolved = rewrite_map(args, |node| {
        let promise = as_promise(node)?;
        if failure.is_some() {
            return Some(Ipld::Null);
        }
        match substitute(promise, results) {
            Ok(value) => Some(value),
            Err(e) => {
                failure = Some(e);
                Some(Ipld::Null)
            }
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(resolved),
    }
}

fn substitute(promise: Promise, results: &HashMap<Cid, Resolved>) -> Result<Ipld, PromiseError> {
    let result = results
        .get(&promise.target)
        .ok_or(PromiseError::Unresolved(promise.target))?;
    let mismatch = |expected, got| {
        PromiseError::BranchMismatch(Box::new(Mismatch {
            target: promise.target,
            expected,
            got,
            from: result.receipt,
        }))
    };
    match (promise.branch, &result.out) {
        (Branch::Any, out) => Ok(out.to_ipld()),
        (Branch::Ok, Out::Ok(value)) => Ok(value.clone()),
        (Branch::Error, out @ Out::Error { .. }) => match out.to_ipld() {
            Ipld::Map(mut map) => Ok(map.remove("error").unwrap_or(Ipld::Null)),
            _ => Ok(Ipld::Null),
        },
        (Branch::Ok, Out::Error { .. }) => Err(mismatch("ok", "error")),
        (Branch::Error, Out::Ok(_)) => Err(mismatch("error", "ok")),
    }
}
