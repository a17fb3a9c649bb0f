//! Locates the official UCAN fixtures (`shared/reference/ucan/fixtures/`), which live outside the
//! crate so every checkout and worktree shares one copy.

use std::path::PathBuf;

/// The path of `rel` inside the fixtures directory, found by walking up from the crate root until
/// a `shared/reference/ucan/fixtures` directory appears. Panics if there is none, since a test that
/// silently skipped its fixtures would prove nothing.
pub fn path(rel: &str) -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let fixtures = dir.join("shared/reference/ucan/fixtures");
        if fixtures.is_dir() {
            return fixtures.join(rel);
        }
    }
    panic!(
        "no shared/reference/ucan/fixtures directory above {}",
        start.display()
    );
}
