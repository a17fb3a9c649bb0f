//! Proof-chain validation.

/// What a valid invocation is authorised to do.
#[derive(Debug, Clone)]
pub struct Authorized;
