//! Integration tests, compiled into one binary to keep link time down.

mod cli;
mod config;
mod container;
mod envelope;
mod fixtures;
mod gateway;
mod policy;
mod receipt;
mod store;
mod task;
mod ucanto;
mod ucanto_encoding;
mod validate;
mod wasm;
