//! Locating the official UCAN fixtures.
//!
//! They are vendored in `tests/fixtures/ucan/` (see the README there for their origin, versions and
//! licence), so a checkout tests itself with nothing beside it.

use std::path::{Path, PathBuf};

/// The fixtures' directory below the crate root.
const FIXTURES: &str = "tests/fixtures/ucan";

/// The path of fixture file `rel` (e.g. `"policy.json"`) in the vendored fixtures.
pub fn path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURES)
        .join(rel)
}
