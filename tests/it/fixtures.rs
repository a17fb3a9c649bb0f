//! Locating the official UCAN fixtures.
//!
//! They live in the shared reference tree (`shared/reference/ucan/fixtures/`, copied from the UCAN
//! working group's spec repositories), next to the repository rather than inside it, and a checkout
//! may sit at different depths below that tree. So we walk up from the crate root until we find it.

use std::path::{Path, PathBuf};

/// Where the fixtures sit relative to some ancestor of the crate root.
const FIXTURES: &str = "shared/reference/ucan/fixtures";

/// The path of fixture file `rel` (e.g. `"policy.json"`), found by walking up from the crate root.
///
/// Panics, naming the directory searched from, if no ancestor holds the fixtures: a test that cannot
/// see its fixtures must fail, not pass vacuously.
pub fn path(rel: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|dir| dir.join(FIXTURES))
        .find(|dir| dir.is_dir())
        .map(|dir| dir.join(rel))
        .unwrap_or_else(|| panic!("no ancestor of {} holds {FIXTURES}", root.display()))
}
