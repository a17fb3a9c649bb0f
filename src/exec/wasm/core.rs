//! Core Wasm runs: the store data and limiter every run uses, naming failures, and plain calls
//! (IPLD numbers in, IPLD numbers out).
//!
//! Conversions are exact or refused: an argument that would be truncated or rounded into a
//! different value is `InvalidArgs`, because silently computing on another number than the caller
//! sent would make the receipt lie.

use ipld_core::ipld::Ipld;
use wasmtime::{FuncType, InstancePre, ResourceLimiter, Store, Trap, Val, ValType};

use super::{Limits, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES};
use crate::exec::{Failure, Outcome};

/// A failed run before it becomes an [`Outcome`] (which also needs the fuel used).
#[derive(Debug)]
pub(super) struct Fail {
    failure: Failure,
    message: String,
}

impl Fail {
    pub(super) fn new(failure: Failure, message: impl Into<String>) -> Self {
        Fail {
            failure,
            message: message.into(),
        }
    }

    /// The outcome of a run that failed after consuming `fuel_used` over `run_time`.
    pub(super) fn into_outcome(self, fuel_used: u64, run_time: std::time::Duration) -> Outcome {
        Outcome::failed(self.failure, self.message, fuel_used, run_time)
    }

    /// The outcome of a run that failed before the guest started.
    pub(super) fn never_ran(self) -> Outcome {
        self.into_outcome(0, std::time::Duration::ZERO)
    }
}

/// Names the failure behind a wasmtime error raised while running guest code.
pub(super) fn classify<T: HasLimiter>(store: &Store<T>, err: &wasmtime::Error) -> Fail {
    // 1. Our limiter saw the guest exceed its memory or table bound. Checked first because the
    //    trap it raised may reach us wrapped in other context.
    if let Some(message) = store.data().limit_hit() {
        return Fail::new(Failure::MemoryLimit, message);
    }
    // 2. Fuel and epoch deadlines surface as distinct trap codes.
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Fail::new(Failure::OutOfFuel, "all fuel was consumed"),
            Trap::Interrupt => Fail::new(Failure::Timeout, "the deadline passed"),
            other => Fail::new(Failure::Trap, other.to_string()),
        };
    }
    // 3. Anything else (a host function's error, an instantiation failure) is the guest's trap.
    Fail::new(Failure::Trap, err.root_cause().to_string())
}

/// Store data that carries a [`Limiter`].
pub(super) trait HasLimiter: Send + 'static {
    fn limiter(&mut self) -> &mut Limiter;
    fn limit_hit(&self) -> Option<&str>;
}

/// Store data of core and ABI runs: only limits.
pub(super) struct CoreState {
    limiter: Limiter,
}

impl CoreState {
    pub(super) fn new(limits: &Limits) -> Self {
        CoreState {
            limiter: Limiter::new(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX)),
        }
    }
}

impl HasLimiter for CoreState {
    fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }
    fn limit_hit(&self) -> Option<&str> {
        self.limiter.hit.as_deref()
    }
}

/// Bounds memory and tables, and remembers when a bound was hit so the failure can be named
/// `MemoryLimit` rather than a generic trap.
pub(super) struct Limiter {
    memory_limit: usize,
    memory_total: usize,
    pub(super) hit: Option<String>,
}

/// The error a limiter raises; it becomes a trap in the guest.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LimitExceeded(String);

impl Limiter {
    pub(super) fn new(memory_limit: usize) -> Self {
        Limiter {
            memory_limit,
            memory_total: 0,
            hit: None,
        }
    }

    fn exceeded(&mut self, message: String) -> wasmtime::Error {
        self.hit = Some(message.clone());
        wasmtime::Error::new(LimitExceeded(message))
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Growth past the module's own declared maximum fails the ordinary Wasm way (-1).
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let total = self
            .memory_total
            .saturating_sub(current)
            .saturating_add(desired);
        if total > self.memory_limit {
            let limit = self.memory_limit;
            return Err(self.exceeded(format!(
                "memory would grow to {total} bytes, over the limit of {limit}"
            )));
        }
        self.memory_total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        if desired > MAX_TABLE_ELEMENTS {
            return Err(self.exceeded(format!(
                "table would grow to {desired} elements, over the limit of {MAX_TABLE_ELEMENTS}"
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Instantiates `pre` and calls `func` with `args`.
pub(super) fn call(
    store: &mut Store<CoreState>,
    pre: &InstancePre<CoreState>,
    func: &str,
    args: &[Ipld],
) -> Result<Ipld, Fail> {
    let instance = pre
        .instantiate(&mut *store)
        .map_err(|e| classify(store, &e))?;
    let Some(export) = instance.get_func(&mut *store, func) else {
        return Err(Fail::new(
            Failure::NoSuchExport,
            format!("the module exports no function `{func}`"),
        ));
    };
    let ty = export.ty(&*store);
    let params = params(&ty, args)?;
    let mut results = result_slots(&ty)?;
    export
        .call(&mut *store, &params, &mut results)
        .map_err(|e| classify(store, &e))?;
    results_to_ipld(&results)
}

/// Converts `args` to the parameter types of `ty`.
fn params(ty: &FuncType, args: &[Ipld]) -> Result<Vec<Val>, Fail> {
    let expected = ty.params().len();
    if args.len() != expected {
        return Err(invalid(format!(
            "the function takes {expected} argument(s), got {}",
            args.len()
        )));
    }
    ty.params()
        .zip(args)
        .enumerate()
        .map(|(index, (ty, arg))| to_val(&ty, arg, index))
        .collect()
}

/// Placeholders for the results, refusing types we cannot express in IPLD.
fn result_slots(ty: &FuncType) -> Result<Vec<Val>, Fail> {
    ty.results()
        .enumerate()
        .map(|(index, ty)| match ty {
            ValType::I32 => Ok(Val::I32(0)),
            ValType::I64 => Ok(Val::I64(0)),
            ValType::F32 => Ok(Val::F32(0)),
            ValType::F64 => Ok(Val::F64(0)),
            other => Err(invalid(format!(
                "result {index} has type {other}; only i32, i64, f32 and f64 are supported"
            ))),
        })
        .collect()
}

/// One argument as a Wasm value of type `ty`, or `InvalidArgs` naming the argument.
///
/// The value the guest receives is the number the caller sent, exactly: that number is what the
/// delegation chain's policies approved. So an integer must lie in the signed range of its width
/// (`4294967295` is not the `i32` `-1`, although the bits agree), a float must be finite and, for
/// `f32`, representable without rounding, and an integer may stand for a float only when the float
/// holds it exactly. A float is never an integer, not even `1.0`.
fn to_val(ty: &ValType, arg: &Ipld, index: usize) -> Result<Val, Fail> {
    let inexact = |shown: String, range: &str| {
        invalid(format!(
            "argument {index} ({shown}) does not fit the {ty} parameter exactly{range}"
        ))
    };
    match (ty, arg) {
        (ValType::I32, Ipld::Integer(n)) => i32::try_from(*n)
            .map(Val::I32)
            .map_err(|_| inexact(n.to_string(), &format!(": {}..={}", i32::MIN, i32::MAX))),
        (ValType::I64, Ipld::Integer(n)) => i64::try_from(*n)
            .map(Val::I64)
            .map_err(|_| inexact(n.to_string(), &format!(": {}..={}", i64::MIN, i64::MAX))),
        (ValType::F32, Ipld::Float(f)) => {
            let narrow = *f as f32;
            if f.is_finite() && f64::from(narrow) == *f {
                Ok(Val::F32(narrow.to_bits()))
            } else {
                Err(inexact(f.to_string(), ""))
            }
        }
        (ValType::F64, Ipld::Float(f)) => {
            if f.is_finite() {
                Ok(Val::F64(f.to_bits()))
            } else {
                Err(inexact(f.to_string(), ""))
            }
        }
        (ValType::F32, Ipld::Integer(n)) => {
            let f = *n as f32;
            // `as i128` saturates, so a value that does not round-trip is not exact.
            if f.is_finite() && f as i128 == *n {
                Ok(Val::F32(f.to_bits()))
            } else {
                Err(inexact(n.to_string(), ""))
            }
        }
        (ValType::F64, Ipld::Integer(n)) => {
            let f = *n as f64;
            if f.is_finite() && f as i128 == *n {
                Ok(Val::F64(f.to_bits()))
            } else {
                Err(inexact(n.to_string(), ""))
            }
        }
        (ValType::I32 | ValType::I64, Ipld::Float(f)) => Err(invalid(format!(
            "argument {index} ({f}) is a float; the {ty} parameter takes only integers"
        ))),
        (ValType::I32 | ValType::I64 | ValType::F32 | ValType::F64, _) => Err(invalid(format!(
            "argument {index} must be a number for a {ty} parameter"
        ))),
        (other, _) => Err(invalid(format!(
            "parameter {index} has type {other}; only i32, i64, f32 and f64 are supported"
        ))),
    }
}

/// The results as IPLD: one bare, several as a list, none as null.
fn results_to_ipld(results: &[Val]) -> Result<Ipld, Fail> {
    let mut values = results
        .iter()
        .enumerate()
        .map(|(index, val)| from_val(val, index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(match values.len() {
        0 => Ipld::Null,
        1 => values.remove(0),
        _ => Ipld::List(values),
    })
}

/// One result as IPLD. Integers are read as signed, the usual convention of compilers.
fn from_val(val: &Val, index: usize) -> Result<Ipld, Fail> {
    let float = |f: f64| {
        if f.is_finite() {
            Ok(Ipld::Float(f))
        } else {
            // DAG-CBOR has no NaN or infinity, so such a result could not go into a receipt.
            Err(Fail::new(
                Failure::Trap,
                format!("result {index} is not a finite number, which DAG-CBOR cannot carry"),
            ))
        }
    };
    match val {
        Val::I32(n) => Ok(Ipld::Integer(i128::from(*n))),
        Val::I64(n) => Ok(Ipld::Integer(i128::from(*n))),
        Val::F32(bits) => float(f64::from(f32::from_bits(*bits))),
        Val::F64(bits) => float(f64::from_bits(*bits)),
        _ => Err(invalid(format!("result {index} has an unsupported type"))),
    }
}

fn invalid(message: String) -> Fail {
    Fail::new(Failure::InvalidArgs, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_all_memories_together() {
        let mut limiter = Limiter::new(3 * 65_536);
        assert!(limiter.memory_growing(0, 65_536, None).unwrap());
        assert!(limiter.memory_growing(0, 2 * 65_536, None).unwrap());
        assert!(limiter.hit.is_none());
        assert!(
            limiter
                .memory_growing(2 * 65_536, 3 * 65_536, None)
                .is_err()
        );
        assert!(limiter.hit.is_some());
    }

    #[test]
    fn limiter_defers_to_declared_maximum() {
        let mut limiter = Limiter::new(usize::MAX);
        assert!(!limiter.memory_growing(0, 2 * 65_536, Some(65_536)).unwrap());
        assert!(!limiter.table_growing(0, 11, Some(10)).unwrap());
        assert!(
            limiter
                .table_growing(0, MAX_TABLE_ELEMENTS + 1, None)
                .is_err()
        );
        assert!(limiter.hit.is_some());
    }

    fn ok(ty: ValType, arg: Ipld) -> Val {
        to_val(&ty, &arg, 0).unwrap()
    }

    fn refused(ty: ValType, arg: Ipld) -> bool {
        matches!(
            to_val(&ty, &arg, 0),
            Err(Fail {
                failure: Failure::InvalidArgs,
                ..
            })
        )
    }

    #[test]
    fn integers_must_lie_in_the_signed_range_of_their_width() {
        assert!(matches!(ok(ValType::I32, Ipld::Integer(-1)), Val::I32(-1)));
        assert!(matches!(
            ok(ValType::I32, Ipld::Integer(i128::from(i32::MAX))),
            Val::I32(i32::MAX)
        ));
        assert!(matches!(
            ok(ValType::I32, Ipld::Integer(i128::from(i32::MIN))),
            Val::I32(i32::MIN)
        ));
        // The same bits as -1, but not the number the caller sent (and a policy approved).
        assert!(refused(ValType::I32, Ipld::Integer(0xFFFF_FFFF)));
        assert!(refused(
            ValType::I32,
            Ipld::Integer(i128::from(i32::MAX) + 1)
        ));
        assert!(refused(
            ValType::I32,
            Ipld::Integer(i128::from(i32::MIN) - 1)
        ));
        assert!(matches!(
            ok(ValType::I64, Ipld::Integer(i128::from(i64::MIN))),
            Val::I64(i64::MIN)
        ));
        assert!(refused(
            ValType::I64,
            Ipld::Integer(i128::from(i64::MAX) + 1)
        ));
        assert!(refused(ValType::I64, Ipld::Integer(i128::from(u64::MAX))));
    }

    #[test]
    fn a_refusal_names_the_argument_and_the_range() {
        let Err(fail) = to_val(&ValType::I32, &Ipld::Integer(4_294_967_295), 3) else {
            panic!("accepted")
        };
        assert!(
            fail.message.contains("argument 3 (4294967295)")
                && fail.message.contains("-2147483648..=2147483647"),
            "{}",
            fail.message
        );
    }

    #[test]
    fn floats_must_be_finite_and_exact() {
        assert!(
            matches!(ok(ValType::F64, Ipld::Float(1.5)), Val::F64(b) if f64::from_bits(b) == 1.5)
        );
        assert!(refused(ValType::F64, Ipld::Float(f64::NAN)));
        assert!(refused(ValType::F64, Ipld::Float(f64::INFINITY)));
        assert!(refused(ValType::F32, Ipld::Float(1e300)));
        // 0.1 has no exact f32: the guest would compute on 0.100000001490116…
        assert!(refused(ValType::F32, Ipld::Float(0.1)));
        assert!(
            matches!(ok(ValType::F32, Ipld::Float(0.375)), Val::F32(b) if f32::from_bits(b) == 0.375)
        );
        assert!(matches!(
            ok(ValType::F32, Ipld::Integer(16_777_216)),
            Val::F32(_)
        ));
        assert!(refused(ValType::F32, Ipld::Integer(16_777_217)));
        assert!(refused(ValType::F64, Ipld::Integer((1 << 53) + 1)));
    }

    #[test]
    fn non_numbers_are_refused() {
        assert!(refused(ValType::I32, Ipld::String("1".into())));
        assert!(refused(ValType::I64, Ipld::Float(1.0)));
        assert!(refused(ValType::I32, Ipld::Float(1.5)));
        assert!(refused(ValType::I32, Ipld::Float(f64::NAN)));
        assert!(refused(ValType::I32, Ipld::Null));
    }

    #[test]
    fn results_shape() {
        assert_eq!(results_to_ipld(&[]).unwrap(), Ipld::Null);
        assert_eq!(results_to_ipld(&[Val::I32(-3)]).unwrap(), Ipld::Integer(-3));
        assert_eq!(
            results_to_ipld(&[Val::I64(1), Val::F64(2.5f64.to_bits())]).unwrap(),
            Ipld::List(vec![Ipld::Integer(1), Ipld::Float(2.5)])
        );
        assert!(results_to_ipld(&[Val::F32(f32::NAN.to_bits())]).is_err());
    }
}
