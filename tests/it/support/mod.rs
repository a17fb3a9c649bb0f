//! Test support shared by several test modules: the fake Bacalhau orchestrator, the OpenAPI
//! schema checker its contract tests use, finding node for the ucanto interop tests, and the
//! PostgreSQL server the store and replica tests use when there is one.

pub mod fake_bacalhau;
pub mod node;
pub mod openapi;
pub mod postgres;
