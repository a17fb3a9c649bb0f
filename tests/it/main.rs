//! Integration tests, compiled into one binary to keep link time down.

mod bacalhau;
mod bacalhau_cli;
mod bacalhau_config;
mod bacalhau_contract;
mod cli;
mod config;
mod container;
mod envelope;
mod fixtures;
mod gateway;
mod policy;
mod receipt;
mod store;
mod support;
mod task;
mod validate;
mod wasm;
