//! The DAG-CBOR ABI (`docs/wasm-abi.md`): structured input and output through guest memory.
//!
//! The guest exports `memory`, `alloc(len: i32) -> i32` and the called function
//! `(ptr: i32, len: i32) -> i64`, which returns `(out_ptr << 32) | out_len`. Every pointer and
//! length the guest hands back is untrusted: each is bounds-checked against the memory's current
//! size before the host touches a byte, and the output length is checked against
//! `max_output_bytes` before the host allocates anything for it.

use ipld_core::ipld::Ipld;
use wasmtime::{Instance, InstancePre, Memory, Store, TypedFunc};

use super::{CoreState, Fail, classify};
use crate::exec::Failure;

/// Instantiates `pre`, passes `input` (DAG-CBOR bytes) to `func` and decodes its DAG-CBOR result.
pub(super) fn call(
    store: &mut Store<CoreState>,
    pre: &InstancePre<CoreState>,
    func: &str,
    input: &[u8],
    max_output_bytes: usize,
) -> Result<Ipld, Fail> {
    let instance = pre
        .instantiate(&mut *store)
        .map_err(|e| classify(store, &e))?;
    let exports = Exports::find(store, &instance, func)?;

    // 1. Ask the guest for room for the input, and check it really is inside memory.
    let in_len = i32::try_from(input.len()).map_err(|_| {
        Fail::new(
            Failure::InvalidArgs,
            "input is too large for a 32-bit guest",
        )
    })?;
    let in_ptr = exports
        .alloc
        .call(&mut *store, in_len)
        .map_err(|e| classify(store, &e))?;
    let Some(at) = checked_range(
        exports.memory.data_size(&*store),
        in_ptr as u32,
        input.len(),
    ) else {
        return Err(bad_pointer("`alloc` returned a buffer outside memory"));
    };
    exports.memory.data_mut(&mut *store)[at].copy_from_slice(input);

    // 2. Run the function.
    let packed = exports
        .func
        .call(&mut *store, (in_ptr, in_len))
        .map_err(|e| classify(store, &e))?;

    // 3. Unpack and check the output before reading it.
    let (out_ptr, out_len) = unpack(packed);
    let out_len = usize::try_from(out_len).unwrap_or(usize::MAX);
    if out_len > max_output_bytes {
        return Err(Fail::new(
            Failure::OutputTooLarge,
            format!("output is {out_len} bytes, over the limit of {max_output_bytes}"),
        ));
    }
    let Some(at) = checked_range(exports.memory.data_size(&*store), out_ptr, out_len) else {
        return Err(bad_pointer("the result points outside memory"));
    };
    let output = &exports.memory.data(&*store)[at];
    serde_ipld_dagcbor::from_slice::<Ipld>(output).map_err(|e| {
        Fail::new(
            Failure::Trap,
            format!("the result is not valid DAG-CBOR: {e}"),
        )
    })
}

/// The exports the ABI needs, with their types checked.
struct Exports {
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    func: TypedFunc<(i32, i32), i64>,
}

impl Exports {
    fn find(store: &mut Store<CoreState>, instance: &Instance, func: &str) -> Result<Self, Fail> {
        let shape = |message: &str| Fail::new(Failure::InvalidModule, message.to_string());
        let memory = instance
            .get_memory(&mut *store, "memory")
            .ok_or_else(|| shape("the ABI needs an exported memory named `memory`"))?;
        let alloc = instance
            .get_func(&mut *store, "alloc")
            .ok_or_else(|| shape("the ABI needs an exported function `alloc`"))?
            .typed::<i32, i32>(&*store)
            .map_err(|_| shape("`alloc` must have type (i32) -> i32"))?;
        let Some(export) = instance.get_func(&mut *store, func) else {
            return Err(Fail::new(
                Failure::NoSuchExport,
                format!("the module exports no function `{func}`"),
            ));
        };
        let func = export
            .typed::<(i32, i32), i64>(&*store)
            .map_err(|_| shape("an ABI function must have type (i32, i32) -> i64"))?;
        Ok(Exports {
            memory,
            alloc,
            func,
        })
    }
}

/// Splits the packed result into `(ptr, len)`: pointer in the high 32 bits, length in the low.
fn unpack(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}

/// `ptr..ptr + len` if it lies within a memory of `size` bytes.
fn checked_range(size: usize, ptr: u32, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

fn bad_pointer(message: &str) -> Fail {
    Fail::new(Failure::Trap, format!("ABI violation: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_splits_high_and_low_words() {
        assert_eq!(unpack((16 << 32) | 5), (16, 5));
        assert_eq!(unpack(-1), (u32::MAX, u32::MAX));
        assert_eq!(unpack(0), (0, 0));
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(checked_range(10, 2, 8), Some(2..10));
        assert_eq!(checked_range(10, 2, 9), None);
        assert_eq!(checked_range(10, 10, 0), Some(10..10));
        assert_eq!(checked_range(10, u32::MAX, usize::MAX), None);
    }
}
