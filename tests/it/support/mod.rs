//! Test support shared by several test modules: the fake Bacalhau orchestrator, the OpenAPI
//! schema checker its contract tests use, and finding node for the ucanto interop tests.

pub mod fake_bacalhau;
pub mod node;
pub mod openapi;
