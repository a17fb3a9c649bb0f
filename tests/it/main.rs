//! Integration tests, compiled into one binary to keep link time down.

mod architecture;
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
mod connections;
mod container;
mod edge;
mod effects;
mod envelope;
mod exact_args;
mod fixtures;
mod gateway;
mod gateway_edges;
mod limits;
mod openapi_doc;
#[cfg(feature = "otel")]
mod otel;
mod policy;
mod promise;
mod receipt;
mod schedule;
mod spec_invocations;
mod store;
mod support;
mod task;
mod ucanto;
mod ucanto_encoding;
mod validate;
mod wasm;
