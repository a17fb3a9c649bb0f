//! The command-line interface.

/// Runs the CLI.
pub fn run() -> anyhow::Result<()> {
    Ok(())
}
