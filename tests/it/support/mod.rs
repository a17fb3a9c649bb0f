//! Test support shared by several test modules: the fake Bacalhau orchestrator and the OpenAPI
//! schema checker its contract tests use.

pub mod fake_bacalhau;
pub mod openapi;
