//! Tests that run JavaScript (the real ucanto packages) need node and npm. Without them such a test
//! is skipped with one visible line, unless `UCAN_GATEWAY_REQUIRE_NODE=1` (set by `.ci/run`), where a
//! missing node is a failure: CI must not pass by skipping the interop tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Set to `1` to make a missing node or npm fail the tests that need them instead of skipping them.
pub const REQUIRE_NODE: &str = "UCAN_GATEWAY_REQUIRE_NODE";

/// The ucanto interop package (`tests/ucanto/`) with its npm dependencies installed, ready for
/// `node`; or `None` when node (or npm, if the packages still need installing) is missing, after
/// printing `SKIPPED: {test} (…)`. Panics instead of skipping when [`REQUIRE_NODE`] is `1`.
pub fn interop_dir(test: &str) -> Option<PathBuf> {
    // Whether the package is ready, decided once per run: npm ci must not run twice at once.
    static READY: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ucanto");
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    let ready = ready.get_or_insert_with(|| prepare(&dir));
    match ready {
        Ok(()) => Some(dir),
        Err(missing) if std::env::var(REQUIRE_NODE).as_deref() == Ok("1") => {
            panic!("{test}: {missing}, and {REQUIRE_NODE}=1 requires it")
        }
        Err(missing) => {
            // Straight to stderr: the test harness captures `eprintln!` of passing tests.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {test} ({missing})");
            None
        }
    }
}

/// Installs the package's dependencies if they are missing; `Err` names what is not installed.
/// A failing `npm ci` with npm present is a real failure and panics.
fn prepare(dir: &Path) -> Result<(), String> {
    if !runs("node") {
        return Err("node not found".into());
    }
    if dir
        .join("node_modules/@ucanto/client/package.json")
        .exists()
    {
        return Ok(());
    }
    if !runs("npm") {
        return Err("npm not found".into());
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("running npm");
    assert!(status.success(), "npm ci failed in {}", dir.display());
    Ok(())
}

/// Whether `program --version` runs and succeeds.
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
