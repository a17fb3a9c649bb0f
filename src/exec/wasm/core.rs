//! Plain calls: IPLD numbers in, IPLD numbers out.
//!
//! Conversions are exact or refused: an argument that would be truncated or rounded into a
//! different value is `InvalidArgs`, because silently computing on another number than the caller
//! sent would make the receipt lie.

use ipld_core::ipld::Ipld;
use wasmtime::{FuncType, InstancePre, Store, Val, ValType};

use super::{CoreState, Fail, classify};
use crate::exec::Failure;

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

/// One argument as a Wasm value of type `ty`.
///
/// Integers are accepted in the signed or unsigned range of the width (Wasm integers have no
/// sign; `0xFFFF_FFFF` and `-1` are the same `i32`). Floats must be finite and, for `f32`, in range;
/// an integer may stand for a float when the float represents it exactly.
fn to_val(ty: &ValType, arg: &Ipld, index: usize) -> Result<Val, Fail> {
    let out_of_range = || invalid(format!("argument {index} is out of range for {ty}"));
    match (ty, arg) {
        (ValType::I32, Ipld::Integer(n)) => {
            if (i128::from(i32::MIN)..=i128::from(u32::MAX)).contains(n) {
                // Truncation keeps the low 32 bits: the two's-complement reading of the value.
                Ok(Val::I32(*n as i32))
            } else {
                Err(out_of_range())
            }
        }
        (ValType::I64, Ipld::Integer(n)) => {
            if (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(n) {
                Ok(Val::I64(*n as i64))
            } else {
                Err(out_of_range())
            }
        }
        (ValType::F32, Ipld::Float(f)) => {
            let narrow = *f as f32;
            if f.is_finite() && narrow.is_finite() {
                Ok(Val::F32(narrow.to_bits()))
            } else {
                Err(out_of_range())
            }
        }
        (ValType::F64, Ipld::Float(f)) => {
            if f.is_finite() {
                Ok(Val::F64(f.to_bits()))
            } else {
                Err(out_of_range())
            }
        }
        (ValType::F32, Ipld::Integer(n)) => {
            let f = *n as f32;
            // `as i128` saturates, so a value that does not round-trip is not exact.
            if f.is_finite() && f as i128 == *n {
                Ok(Val::F32(f.to_bits()))
            } else {
                Err(out_of_range())
            }
        }
        (ValType::F64, Ipld::Integer(n)) => {
            let f = *n as f64;
            if f.is_finite() && f as i128 == *n {
                Ok(Val::F64(f.to_bits()))
            } else {
                Err(out_of_range())
            }
        }
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
    fn integers_accept_signed_and_unsigned_ranges() {
        assert!(matches!(ok(ValType::I32, Ipld::Integer(-1)), Val::I32(-1)));
        assert!(matches!(
            ok(ValType::I32, Ipld::Integer(0xFFFF_FFFF)),
            Val::I32(-1)
        ));
        assert!(refused(ValType::I32, Ipld::Integer(0x1_0000_0000)));
        assert!(refused(
            ValType::I32,
            Ipld::Integer(i128::from(i32::MIN) - 1)
        ));
        assert!(matches!(
            ok(ValType::I64, Ipld::Integer(i128::from(u64::MAX))),
            Val::I64(-1)
        ));
        assert!(refused(
            ValType::I64,
            Ipld::Integer(i128::from(u64::MAX) + 1)
        ));
    }

    #[test]
    fn floats_must_be_finite_and_exact() {
        assert!(
            matches!(ok(ValType::F64, Ipld::Float(1.5)), Val::F64(b) if f64::from_bits(b) == 1.5)
        );
        assert!(refused(ValType::F64, Ipld::Float(f64::NAN)));
        assert!(refused(ValType::F32, Ipld::Float(1e300)));
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
