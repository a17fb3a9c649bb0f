;; An example guest for the DAG-CBOR ABI (docs/wasm-abi.md).
;;
;; Exports:
;;   memory                        the guest's linear memory
;;   alloc(len: i32) -> i32        a bump allocator the host uses to place the input
;;   wrap(ptr: i32, len: i32) -> i64
;;       returns the DAG-CBOR map {"input": <input>}; because the input is already a DAG-CBOR
;;       value, wrapping is a 7-byte header in front of a copy of it
;;   echo(ptr: i32, len: i32) -> i64
;;       returns the input itself
;;
;; Results are packed as (out_ptr << 32) | out_len.
(module
  (memory (export "memory") 1)

  ;; The header of a one-entry map whose key is the 5-character text "input":
  ;; a1 (map, 1 entry) 65 (text, 5 bytes) "input".
  (data (i32.const 0) "\a1\65input")

  ;; Allocations start after the header; nothing is ever freed (one call per instance).
  (global $heap (mut i32) (i32.const 64))

  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $ptr i32)
    (local $end i32)
    (local $have i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    ;; Refuse sizes that would wrap around the 32-bit address space.
    (if (i32.lt_u (local.get $end) (local.get $ptr)) (then unreachable))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        ;; Grow by the missing bytes, rounded up to whole 64 KiB pages.
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))

  (func (export "wrap") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32)
    (local $total i32)
    (local.set $total (i32.add (local.get $len) (i32.const 7)))
    (local.set $out (call $alloc (local.get $total)))
    (memory.copy (local.get $out) (i32.const 0) (i32.const 7))
    (memory.copy (i32.add (local.get $out) (i32.const 7)) (local.get $ptr) (local.get $len))
    (call $pack (local.get $out) (local.get $total)))

  (func (export "echo") (param $ptr i32) (param $len i32) (result i64)
    (call $pack (local.get $ptr) (local.get $len))))
