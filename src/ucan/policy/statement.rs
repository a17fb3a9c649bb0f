//! The statement tree, and its conversion from and to the IPLD form (the spec's `Statement` schema).
//!
//! Parsing is the one place untrusted structure is walked recursively, so it counts depth and stops
//! at [`MAX_DEPTH`](super::MAX_DEPTH); every tree it returns is therefore shallow enough for the
//! recursive evaluator and printer. Literal values in `==` and `!=` are bounded the same way (by
//! [`MAX_LITERAL_DEPTH`](super::MAX_LITERAL_DEPTH)), since equality walks them too.

use ipld_core::ipld::Ipld;

use super::glob::Glob;
use super::selector::Selector;
use super::{MAX_DEPTH, MAX_LITERAL_DEPTH, MAX_SELECTOR_LEN, PolicyError};
use crate::ipld::kind;
use crate::ucan::ErrorKind;

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    /// `["==", sel, value]`: deep equality, agnostic to int/float.
    Equal(Selector, Ipld),
    /// `["!=", sel, value]`.
    NotEqual(Selector, Ipld),
    /// `["<" | "<=" | ">" | ">=", sel, number]`.
    Compare(Order, Selector, Number),
    /// `["like", sel, pattern]`.
    Like(Selector, Glob),
    /// `["not", statement]`.
    Not(Box<Statement>),
    /// `["and", [statement, ...]]`.
    And(Vec<Statement>),
    /// `["or", [statement, ...]]`.
    Or(Vec<Statement>),
    /// `["all", sel, statement]`.
    All(Selector, Box<Statement>),
    /// `["any", sel, statement]`.
    Any(Selector, Box<Statement>),
}

/// The numeric inequalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// The right-hand side of an inequality; always finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Int(i128),
    Float(f64),
}

impl Order {
    fn symbol(self) -> &'static str {
        match self {
            Order::Less => "<",
            Order::LessOrEqual => "<=",
            Order::Greater => ">",
            Order::GreaterOrEqual => ">=",
        }
    }
}

/// Parses a whole policy: a list of statements.
pub(crate) fn parse_policy(value: &Ipld) -> Result<Vec<Statement>, PolicyError> {
    let mut path = String::new();
    let Ipld::List(items) = value else {
        return Err(error(
            &path,
            format!(
                "a policy must be a list of statements, found {}",
                kind(value)
            ),
        ));
    };
    parse_list(items, &mut path, 1)
}

fn parse_list(
    items: &[Ipld],
    path: &mut String,
    depth: usize,
) -> Result<Vec<Statement>, PolicyError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        out.push(parse_statement(item, path, depth)?);
        path.truncate(len);
    }
    Ok(out)
}

/// Parses one statement found at `path`, `depth` statements deep (top-level statements are depth 1).
///
/// The spec's forms, in its order: equality (`==`, `!=`), inequality (`<`, `<=`, `>`, `>=`), glob
/// matching (`like`), connectives (`not`, `and`, `or`) and quantifiers (`all`, `any`).
fn parse_statement(
    value: &Ipld,
    path: &mut String,
    depth: usize,
) -> Result<Statement, PolicyError> {
    if depth > MAX_DEPTH {
        return Err(limit(
            path,
            ErrorKind::PolicyTooDeep,
            format!("statements are nested more than {MAX_DEPTH} deep; at most {MAX_DEPTH}"),
        ));
    }
    let (op, parts) = operator_and_parts(value, path)?;
    match op {
        "not" => Ok(Statement::Not(Box::new(nested(&parts[1], path, 1, depth)?))),
        "and" | "or" => parse_connective(op, &parts[1], path, depth),
        _ => {
            let selector = selector(&parts[1], path)?;
            let arg = &parts[2];
            match op {
                "==" | "!=" => parse_equality(op, selector, arg, path),
                "<" | "<=" | ">" | ">=" => parse_inequality(op, selector, arg, path),
                "like" => parse_like(selector, arg, path),
                "all" => Ok(Statement::All(
                    selector,
                    Box::new(nested(arg, path, 2, depth)?),
                )),
                _ => Ok(Statement::Any(
                    selector,
                    Box::new(nested(arg, path, 2, depth)?),
                )),
            }
        }
    }
}

/// A statement's shape: a list whose first element is a known operator, with as many elements as
/// that operator takes (`[op, argument]` or `[op, selector, argument]`).
fn operator_and_parts<'v>(
    value: &'v Ipld,
    path: &str,
) -> Result<(&'v str, &'v [Ipld]), PolicyError> {
    let Ipld::List(parts) = value else {
        return Err(error(
            path,
            format!("a statement must be a list, found {}", kind(value)),
        ));
    };
    let Some(op) = parts.first() else {
        return Err(error(path, "a statement must not be empty".into()));
    };
    let Ipld::String(op) = op else {
        return Err(at(
            path,
            0,
            format!("the operator must be a string, found {}", kind(op)),
        ));
    };
    let op = op.as_str();
    let arity = match op {
        "not" | "and" | "or" => 2,
        "==" | "!=" | "<" | "<=" | ">" | ">=" | "like" | "all" | "any" => 3,
        _ => return Err(at(path, 0, format!("unknown operator {op:?}"))),
    };
    if parts.len() != arity {
        let shape = if arity == 2 {
            "[op, argument]"
        } else {
            "[op, selector, argument]"
        };
        return Err(error(
            path,
            format!(
                "{op:?} takes {arity} elements {shape}, found {}",
                parts.len()
            ),
        ));
    }
    Ok((op, parts))
}

/// `["and" | "or", [statement, ...]]`: the statements are one level deeper.
fn parse_connective(
    op: &str,
    arg: &Ipld,
    path: &mut String,
    depth: usize,
) -> Result<Statement, PolicyError> {
    let Ipld::List(items) = arg else {
        return Err(at(
            path,
            1,
            format!("{op:?} needs a list of statements, found {}", kind(arg)),
        ));
    };
    let len = path.len();
    path.push_str("[1]");
    let list = parse_list(items, path, depth + 1)?;
    path.truncate(len);
    Ok(if op == "and" {
        Statement::And(list)
    } else {
        Statement::Or(list)
    })
}

/// `["==" | "!=", selector, value]`, the value bounded in depth for deep equality.
fn parse_equality(
    op: &str,
    selector: Selector,
    arg: &Ipld,
    path: &str,
) -> Result<Statement, PolicyError> {
    check_literal(arg, path)?;
    Ok(if op == "==" {
        Statement::Equal(selector, arg.clone())
    } else {
        Statement::NotEqual(selector, arg.clone())
    })
}

/// `["<" | "<=" | ">" | ">=", selector, number]`, the number finite.
fn parse_inequality(
    op: &str,
    selector: Selector,
    arg: &Ipld,
    path: &str,
) -> Result<Statement, PolicyError> {
    let number = match arg {
        Ipld::Integer(i) => Number::Int(*i),
        Ipld::Float(f) if f.is_finite() => Number::Float(*f),
        Ipld::Float(_) => {
            return Err(at(path, 2, "the number must be finite".into()));
        }
        other => {
            return Err(at(
                path,
                2,
                format!("{op:?} needs a number, found {}", kind(other)),
            ));
        }
    };
    let order = match op {
        "<" => Order::Less,
        "<=" => Order::LessOrEqual,
        ">" => Order::Greater,
        _ => Order::GreaterOrEqual,
    };
    Ok(Statement::Compare(order, selector, number))
}

/// `["like", selector, pattern]`.
fn parse_like(selector: Selector, arg: &Ipld, path: &str) -> Result<Statement, PolicyError> {
    match arg {
        Ipld::String(pattern) => Ok(Statement::Like(selector, Glob::new(pattern))),
        other => Err(at(
            path,
            2,
            format!("\"like\" needs a string pattern, found {}", kind(other)),
        )),
    }
}

/// Parses the statement nested at element `index` of the statement at `path`.
fn nested(
    value: &Ipld,
    path: &mut String,
    index: usize,
    depth: usize,
) -> Result<Statement, PolicyError> {
    let len = path.len();
    path.push_str(&format!("[{index}]"));
    let statement = parse_statement(value, path, depth + 1)?;
    path.truncate(len);
    Ok(statement)
}

fn selector(value: &Ipld, path: &str) -> Result<Selector, PolicyError> {
    match value {
        // Named here, where the limit is known to be the reason; `Selector::parse` guards it too.
        Ipld::String(text) if text.len() > MAX_SELECTOR_LEN => Err(limit(
            &format!("{path}[1]"),
            ErrorKind::SelectorTooLong,
            format!(
                "the selector is {} bytes; at most {MAX_SELECTOR_LEN}",
                text.len()
            ),
        )),
        Ipld::String(text) => Selector::parse(text).map_err(|reason| at(path, 1, reason)),
        other => Err(at(
            path,
            1,
            format!("the selector must be a string, found {}", kind(other)),
        )),
    }
}

/// Rejects literals nested deeper than [`MAX_LITERAL_DEPTH`], without recursing.
fn check_literal(value: &Ipld, path: &str) -> Result<(), PolicyError> {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_LITERAL_DEPTH {
            return Err(limit(
                &format!("{path}[2]"),
                ErrorKind::PolicyTooDeep,
                format!(
                    "the value is nested more than {MAX_LITERAL_DEPTH} deep; at most {MAX_LITERAL_DEPTH}"
                ),
            ));
        }
        match v {
            Ipld::List(items) => stack.extend(items.iter().map(|i| (i, depth + 1))),
            Ipld::Map(map) => stack.extend(map.values().map(|i| (i, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

fn error(path: &str, reason: String) -> PolicyError {
    limit(path, ErrorKind::MalformedToken, reason)
}

/// An error at `path` of `kind`: a limit's name, or `MalformedToken` (see [`error`]).
fn limit(path: &str, kind: ErrorKind, reason: String) -> PolicyError {
    let path = if path.is_empty() {
        "top level".to_owned()
    } else {
        path.to_owned()
    };
    PolicyError { path, reason, kind }
}

/// An error about element `index` of the statement at `path`.
fn at(path: &str, index: usize, reason: String) -> PolicyError {
    error(&format!("{path}[{index}]"), reason)
}

impl Statement {
    /// The IPLD form, which [`parse_policy`] reads back to an equal statement.
    pub(crate) fn to_ipld(&self) -> Ipld {
        let op = |s: &str| Ipld::String(s.to_owned());
        let sel = |s: &Selector| Ipld::String(s.to_string());
        let list = |items: &[Statement]| Ipld::List(items.iter().map(Statement::to_ipld).collect());
        Ipld::List(match self {
            Statement::Equal(s, v) => vec![op("=="), sel(s), v.clone()],
            Statement::NotEqual(s, v) => vec![op("!="), sel(s), v.clone()],
            Statement::Compare(o, s, n) => {
                let n = match *n {
                    Number::Int(i) => Ipld::Integer(i),
                    Number::Float(f) => Ipld::Float(f),
                };
                vec![op(o.symbol()), sel(s), n]
            }
            Statement::Like(s, g) => vec![op("like"), sel(s), Ipld::String(g.as_str().to_owned())],
            Statement::Not(inner) => vec![op("not"), inner.to_ipld()],
            Statement::And(items) => vec![op("and"), list(items)],
            Statement::Or(items) => vec![op("or"), list(items)],
            Statement::All(s, inner) => vec![op("all"), sel(s), inner.to_ipld()],
            Statement::Any(s, inner) => vec![op("any"), sel(s), inner.to_ipld()],
        })
    }
}
