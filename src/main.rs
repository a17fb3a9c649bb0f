//! The `ucan-gateway` binary: parse the command line and run it.

use std::process::ExitCode;

// A request decodes tokens, checks a chain, runs a task and encodes a receipt, allocating and
// freeing many small values on several threads at once; glibc's allocator took about a tenth of
// the gateway's CPU under load, and mimalloc answered more invocations per second in the same
// runs (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
