//! The `ucan-gateway` binary: parse the command line and run it.

use std::process::ExitCode;

fn main() -> ExitCode {
    match ucan_gateway::cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            // Failures before a verdict (unreadable files, bad flags) are usage errors.
            ExitCode::from(2)
        }
    }
}
