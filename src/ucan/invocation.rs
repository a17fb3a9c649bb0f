//! Invocation tokens (`ucan/inv@1.0.0`).

/// A decoded invocation.
#[derive(Debug, Clone)]
pub struct Invocation;
