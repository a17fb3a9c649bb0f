//! Integration tests, compiled into one binary to keep link time down.

mod arguments;
mod bacalhau;
mod bacalhau_cli;
mod bacalhau_config;
mod bacalhau_contract;
mod browser;
mod cli;
mod cli_conventions;
mod cli_remote;
mod config;
mod container;
mod effects;
mod envelope;
mod fixtures;
mod gateway;
mod policy;
mod promise;
mod receipt;
mod schedule;
mod store;
mod support;
mod task;
mod ucanto;
mod ucanto_encoding;
mod validate;
mod wasm;
