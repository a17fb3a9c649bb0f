//! Delegation tokens (`ucan/dlg@1.0.0`).

/// A decoded delegation.
#[derive(Debug, Clone)]
pub struct Delegation;
