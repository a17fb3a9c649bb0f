;; The module inlined in the README quickstart: add two i32s.
;; Its binary (41 bytes) is what `wat2wasm add.wat` or wasmtime's `wat` crate produce.
(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add))
