//! Integration tests, compiled into one binary to keep link time down.

mod wasm;
