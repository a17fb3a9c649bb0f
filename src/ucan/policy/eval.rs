//! Evaluating statements against `args` (spec, "Validation").
//!
//! Evaluation never fails: a selector that cannot be resolved makes its statement false, and so do
//! operands of the wrong kind (a non-number under `<`, a non-string under `like`, a non-collection
//! under `all`). Logic is two-valued, so `not` simply inverts its statement.
//!
//! `!=` is the spec's `["not", ["==", sel, value]]` whenever the selector resolves; when it does not,
//! `!=` is false like every other statement whose selector fails ("the associated statement MUST
//! return false"). We chose that reading over the literal `not ==` (which would be true) so that a
//! shape the policy did not anticipate never passes by default. go-ucan goes further and lets an
//! unresolvable selector fail the enclosing top-level statement even through `not` and `or`; we keep
//! the spec's plain boolean connectives instead.
//!
//! Numbers are compared by value, not by kind: `1 == 1.0`, also inside lists and maps, and integers
//! are compared with floats exactly (no lossy conversion of large integers).
//!
//! Policies and `args` both come from untrusted tokens. Selectors only ever descend, so a check costs
//! roughly (policy size) × (args size), but with both near the size limit of a request that product
//! is still far too much work to do on demand. So every check gets a [`Budget`] of [`MAX_STEPS`]
//! units, charged per statement, per selector segment and item, and per value compared; running out
//! fails the check (even under `not`) rather than stalling the gateway.

use std::cmp::Ordering;

use ipld_core::ipld::Ipld;

use super::selector::{Item, Selected};
use super::statement::{Number, Order, Statement};

/// Work units one [`Policy::check`](super::Policy::check) may spend. Realistic policies use a few
/// hundred; the bound is there for adversarial ones.
pub const MAX_STEPS: u64 = 1_000_000;

/// The remaining evaluation budget of one check.
#[derive(Debug)]
pub(crate) struct Budget {
    remaining: u64,
}

/// The budget ran out; the check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted;

impl Budget {
    /// A fresh budget of [`MAX_STEPS`].
    pub(crate) fn new() -> Self {
        Self::with(MAX_STEPS)
    }

    /// A budget of `steps`.
    pub(crate) fn with(steps: u64) -> Self {
        Self { remaining: steps }
    }

    /// Spends `steps`, failing once the budget is gone.
    pub(crate) fn charge(&mut self, steps: u64) -> Result<(), Exhausted> {
        match self.remaining.checked_sub(steps) {
            Some(left) => {
                self.remaining = left;
                Ok(())
            }
            None => {
                self.remaining = 0;
                Err(Exhausted)
            }
        }
    }
}

/// Whether `statement` holds for `subject`. Recursion follows the statement tree, whose depth parsing
/// bounds by [`MAX_DEPTH`](super::MAX_DEPTH).
pub(crate) fn holds(
    statement: &Statement,
    subject: Item<'_>,
    budget: &mut Budget,
) -> Result<bool, Exhausted> {
    budget.charge(1)?;
    Ok(match statement {
        Statement::Equal(sel, value) => match sel.select(subject, budget)? {
            Some(found) => selected_eq(&found, value, budget)?,
            None => false,
        },
        Statement::NotEqual(sel, value) => match sel.select(subject, budget)? {
            Some(found) => !selected_eq(&found, value, budget)?,
            None => false,
        },
        Statement::Compare(order, sel, bound) => match sel.select(subject, budget)? {
            Some(Selected::One(item)) => match item_number(item) {
                Some(n) => compare(n, *bound).is_some_and(|o| order_holds(*order, o)),
                None => false,
            },
            _ => false,
        },
        Statement::Like(sel, glob) => match sel.select(subject, budget)? {
            Some(Selected::One(Item::Node(Ipld::String(s)))) => {
                budget.charge(1 + (s.len() as u64) / 64)?;
                glob.matches(s)
            }
            _ => false,
        },
        Statement::Not(inner) => !holds(inner, subject, budget)?,
        Statement::And(items) => {
            for item in items {
                if !holds(item, subject, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        // The spec makes an empty `or` true, like an empty `and`.
        Statement::Or(items) => {
            if items.is_empty() {
                return Ok(true);
            }
            for item in items {
                if holds(item, subject, budget)? {
                    return Ok(true);
                }
            }
            false
        }
        Statement::All(sel, inner) => match sel.select(subject, budget)? {
            Some(found) => {
                let mut all = true;
                if !for_each_child(&found, |child| {
                    all = holds(inner, child, budget)?;
                    Ok(all)
                })? {
                    return Ok(false);
                }
                all
            }
            None => false,
        },
        Statement::Any(sel, inner) => match sel.select(subject, budget)? {
            Some(found) => {
                let mut any = false;
                if !for_each_child(&found, |child| {
                    any = holds(inner, child, budget)?;
                    Ok(!any)
                })? {
                    return Ok(false);
                }
                any
            }
            None => false,
        },
    })
}

/// Calls `f` on each element of a collection (list elements, map values, or the items `[]`
/// collected) until it returns false. Returns false if `found` is not a collection.
fn for_each_child<'a>(
    found: &Selected<'a>,
    mut f: impl FnMut(Item<'a>) -> Result<bool, Exhausted>,
) -> Result<bool, Exhausted> {
    match found {
        Selected::Many(items) => {
            for item in items {
                if !f(*item)? {
                    break;
                }
            }
        }
        Selected::One(Item::Node(Ipld::List(list))) => {
            for item in list {
                if !f(Item::Node(item))? {
                    break;
                }
            }
        }
        Selected::One(Item::List(list)) => {
            for item in *list {
                if !f(Item::Node(item))? {
                    break;
                }
            }
        }
        Selected::One(Item::Node(Ipld::Map(map))) => {
            for item in map.values() {
                if !f(Item::Node(item))? {
                    break;
                }
            }
        }
        Selected::One(_) => return Ok(false),
    }
    Ok(true)
}

/// Deep equality of a selection with a literal.
fn selected_eq(
    found: &Selected<'_>,
    literal: &Ipld,
    budget: &mut Budget,
) -> Result<bool, Exhausted> {
    match found {
        Selected::One(item) => item_eq(*item, literal, budget),
        Selected::Many(items) => {
            let Ipld::List(expected) = literal else {
                return Ok(false);
            };
            if items.len() != expected.len() {
                return Ok(false);
            }
            for (item, e) in items.iter().zip(expected) {
                if !item_eq(*item, e, budget)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

fn item_eq(item: Item<'_>, literal: &Ipld, budget: &mut Budget) -> Result<bool, Exhausted> {
    budget.charge(1)?;
    match item {
        Item::Node(node) => deep_eq(node, literal, budget),
        Item::Null => Ok(matches!(literal, Ipld::Null)),
        Item::Byte(b) => Ok(number(literal)
            .is_some_and(|n| compare(Number::Int(b.into()), n) == Some(Ordering::Equal))),
        Item::Bytes(bytes) => Ok(matches!(literal, Ipld::Bytes(l) if l.as_slice() == bytes)),
        Item::List(list) => list_eq(list, literal, budget),
    }
}

fn list_eq(list: &[Ipld], literal: &Ipld, budget: &mut Budget) -> Result<bool, Exhausted> {
    let Ipld::List(expected) = literal else {
        return Ok(false);
    };
    if list.len() != expected.len() {
        return Ok(false);
    }
    for (a, b) in list.iter().zip(expected) {
        if !deep_eq(a, b, budget)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Deep equality with numbers compared by value. Recursion descends only where both sides are
/// collections, so it is bounded by the literal's depth, which parsing limits.
fn deep_eq(a: &Ipld, literal: &Ipld, budget: &mut Budget) -> Result<bool, Exhausted> {
    budget.charge(1)?;
    Ok(match (a, literal) {
        (Ipld::List(x), _) => list_eq(x, literal, budget)?,
        (Ipld::Map(x), Ipld::Map(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            // Both are sorted by key, so equal maps line up pairwise.
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                if kx != ky || !deep_eq(vx, vy, budget)? {
                    return Ok(false);
                }
            }
            true
        }
        (Ipld::Integer(_) | Ipld::Float(_), _) => match (number(a), number(literal)) {
            (Some(x), Some(y)) => compare(x, y) == Some(Ordering::Equal),
            _ => false,
        },
        (Ipld::Null, Ipld::Null) => true,
        (Ipld::Bool(x), Ipld::Bool(y)) => x == y,
        (Ipld::String(x), Ipld::String(y)) => x == y,
        (Ipld::Bytes(x), Ipld::Bytes(y)) => x == y,
        (Ipld::Link(x), Ipld::Link(y)) => x == y,
        _ => false,
    })
}

fn number(value: &Ipld) -> Option<Number> {
    match value {
        Ipld::Integer(i) => Some(Number::Int(*i)),
        Ipld::Float(f) => Some(Number::Float(*f)),
        _ => None,
    }
}

fn item_number(item: Item<'_>) -> Option<Number> {
    match item {
        Item::Node(node) => number(node),
        Item::Byte(b) => Some(Number::Int(b.into())),
        _ => None,
    }
}

fn order_holds(order: Order, o: Ordering) -> bool {
    match order {
        Order::Less => o == Ordering::Less,
        Order::LessOrEqual => o != Ordering::Greater,
        Order::Greater => o == Ordering::Greater,
        Order::GreaterOrEqual => o != Ordering::Less,
    }
}

/// Compares two numbers by value; `None` only when a NaN is involved.
pub(crate) fn compare(a: Number, b: Number) -> Option<Ordering> {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => Some(x.cmp(&y)),
        (Number::Float(x), Number::Float(y)) => x.partial_cmp(&y),
        (Number::Int(x), Number::Float(y)) => int_float(x, y),
        (Number::Float(x), Number::Int(y)) => int_float(y, x).map(Ordering::reverse),
    }
}

/// Compares an integer with a float exactly. Converting the integer to f64 would round large values
/// (2^53 + 1 would equal 2^53), so the float's integral part is compared as an integer instead.
fn int_float(i: i128, f: f64) -> Option<Ordering> {
    // 2^127: every finite float at or beyond it is outside i128's range.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f.is_nan() {
        return None;
    }
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f < -LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // Exact: `whole` is integral and within i128's range.
    let w = whole as i128;
    Some(match i.cmp(&w) {
        Ordering::Equal => {
            if f > whole {
                Ordering::Less
            } else if f < whole {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_compare_by_value() {
        use Number::{Float, Int};
        assert_eq!(compare(Int(1), Float(1.0)), Some(Ordering::Equal));
        assert_eq!(compare(Float(1.0), Int(1)), Some(Ordering::Equal));
        assert_eq!(compare(Int(1), Float(1.5)), Some(Ordering::Less));
        assert_eq!(compare(Int(2), Float(1.5)), Some(Ordering::Greater));
        assert_eq!(compare(Int(-1), Float(-1.5)), Some(Ordering::Greater));
        assert_eq!(compare(Int(-2), Float(-1.5)), Some(Ordering::Less));
        assert_eq!(compare(Float(-0.0), Int(0)), Some(Ordering::Equal));
        // 2^53 + 1 is not representable as f64; a lossy conversion would call these equal.
        assert_eq!(
            compare(Int((1 << 53) + 1), Float(9_007_199_254_740_992.0)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(Int(i128::MAX), Float(f64::MAX)),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(Int(i128::MIN), Float(f64::MIN)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            compare(Int(i128::MIN), Float(-1.7014118346046923e38)),
            Some(Ordering::Equal)
        );
        assert_eq!(compare(Int(0), Float(f64::NAN)), None);
        assert_eq!(
            compare(Float(f64::INFINITY), Int(i128::MAX)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn budget_runs_out() {
        let mut b = Budget::with(2);
        assert_eq!(b.charge(2), Ok(()));
        assert_eq!(b.charge(1), Err(Exhausted));
        assert_eq!(b.charge(0), Ok(()));
    }

    #[test]
    fn deep_equality_ignores_number_kinds_at_any_depth() {
        let mut b = Budget::new();
        let a = Ipld::List(vec![
            Ipld::Integer(1),
            Ipld::Map([("x".to_owned(), Ipld::Integer(2))].into()),
        ]);
        let l = Ipld::List(vec![
            Ipld::Float(1.0),
            Ipld::Map([("x".to_owned(), Ipld::Float(2.0))].into()),
        ]);
        assert_eq!(deep_eq(&a, &l, &mut b), Ok(true));
        let l = Ipld::List(vec![
            Ipld::Float(1.0),
            Ipld::Map([("y".to_owned(), Ipld::Float(2.0))].into()),
        ]);
        assert_eq!(deep_eq(&a, &l, &mut b), Ok(false));
        assert_eq!(
            deep_eq(&Ipld::Float(f64::NAN), &Ipld::Float(f64::NAN), &mut b),
            Ok(false)
        );
        assert_eq!(
            deep_eq(&Ipld::Bool(true), &Ipld::Integer(1), &mut b),
            Ok(false)
        );
        assert_eq!(deep_eq(&Ipld::Null, &Ipld::List(vec![]), &mut b), Ok(false));
    }
}
