//! Tasks: what an authorised invocation asks the gateway to do, in the IPVM task shape (resource,
//! operation, input, execution settings), with the identities used for memoization and receipts.

use serde::Deserialize;

/// How a task may be scheduled, decided by the operator's route for its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectClass {
    /// Same input, same output, no side effects: may be memoized and retried.
    Pure,
    /// Side effects that are safe to repeat: may be retried, not memoized by default.
    Nondestructive,
    /// Side effects that must not be repeated: never retried, never run twice for one invocation.
    Destructive,
}

impl EffectClass {
    /// The lowercase name used in policy files and receipts.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectClass::Pure => "pure",
            EffectClass::Nondestructive => "nondestructive",
            EffectClass::Destructive => "destructive",
        }
    }
}
