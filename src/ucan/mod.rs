//! The UCAN 1.0 core: everything needed to decide whether an invocation is backed by delegated
//! authority. This module does no I/O and knows nothing of HTTP, storage or execution.
//!
//! - [`envelope`]: the signed DAG-CBOR envelope shared by every token kind, and its varsig header.
//! - [`command`]: command paths and their attenuation rule.
//! - [`policy`]: the policy language (`pol`) that constrains invocation arguments.
//! - [`delegation`] and [`invocation`]: the two token payloads, with builders.
//! - [`container`]: the `ctn-v1` transport format for several tokens.
//! - [`validate`]: the proof-chain checklist that turns an invocation and its proofs into [`validate::Authorized`].

pub mod command;
pub mod container;
pub mod delegation;
pub mod envelope;
pub mod error;
pub(crate) mod fields;
pub mod invocation;
pub mod policy;
pub mod validate;
pub mod varsig;

pub use command::Command;
pub use delegation::Delegation;
pub use envelope::Envelope;
pub use error::{ErrorKind, ValidationError};
pub use invocation::Invocation;
pub use policy::Policy;
