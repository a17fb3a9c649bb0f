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
//! - [`cli`]: the command-line interface.

pub mod cli;
pub mod did;
pub mod exec;
pub mod ipld;
pub mod ucan;
