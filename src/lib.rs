//! # ucan-gateway
//!
//! A capability-secured invocation gateway. Apps send signed UCAN 1.0 invocations; the gateway checks
//! the delegated authority behind each one, maps it to a task, runs it, and answers with a signed receipt.
//!
//! The crate is organised by concept:
//! - [`did`]: principals (`did:key`), signing keys, key files and signature verification.
//! - [`ucan`]: the pure UCAN 1.0 core: envelopes, delegations, invocations, commands, the policy
//!   language, containers and proof-chain validation. It does no I/O.
//! - [`ipld`]: small helpers over IPLD values (DAG-JSON text, CIDs of DAG-CBOR blocks).
//! - [`config`]: the operator's policy (`policies/*.toml`): subjects served, routes, limits, admission.
//! - [`task`]: what an authorised invocation asks for, with its identities and effect class.
//! - [`promise`]: `await/ok`, `await/error` and `await/*` values in arguments, and their resolution.
//! - [`inspect`]: a readable view of any token or container (CLI `inspect`, `POST /inspect`).
//! - [`receipt`]: signed receipts (`/ucan/assert` invocations) and the effects they request.
//! - [`gateway`]: the path of one invocation, from container bytes to a stored, signed receipt.
//! - [`exec`]: executors (local Wasm, WASI, blobs) behind one small trait.
//! - [`store`]: durable state (receipts, blobs, replay keys, revocations) behind one small trait.
//! - [`ucanto`]: ucanto compatibility: CAR messages, dag-ucan 0.9.1 tokens, `with/can/nb` authority
//!   and ucanto receipts, mapped onto the same tasks as UCAN 1.0 invocations.
//! - [`server`]: the HTTP edge (axum); [`metrics`]: Prometheus metrics.
//! - [`cli`]: the command-line interface.

pub mod cli;
pub mod config;
pub mod did;
pub mod exec;
pub mod gateway;
pub mod inspect;
pub mod ipld;
pub mod metrics;
pub mod promise;
pub mod receipt;
pub mod server;
pub mod store;
pub mod task;
pub mod ucan;
pub mod ucanto;
