//! The module invariants of `docs/ARCHITECTURE.md`, checked on the source: a rule broken by a new
//! `use` fails here, not in review.
//!
//! - `ucan/` and `ucanto/` do no I/O: they import none of tokio, axum, sqlx, reqwest, wasmtime;
//! - only `server/` knows HTTP serving (axum, tower-http);
//! - only `store/` knows SQL (sqlx, rusqlite);
//! - executors (`exec/`) import neither the gateway, the store nor the operator policy;
//! - only `cli/` (and `main.rs`) use anyhow.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its comments (line comments and doc comments), so prose may name
/// anything.
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `code` refers to the crate or module `name` as a path root (`name::…`), in a `use` or
/// inline.
fn mentions(code: &str, name: &str) -> bool {
    let needle = format!("{name}::");
    code.match_indices(&needle).any(|(i, _)| {
        // Not part of a longer identifier (`my_axum::`), nor a field of another path (`x.axum::`).
        code[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// The files under `src/` whose path (relative to `src/`) matches `inside`, that mention any of
/// `names`.
fn offenders(inside: impl Fn(&str) -> bool, names: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for path in sources(&src) {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if !inside(&rel) {
            continue;
        }
        let code = code(&path);
        for name in names {
            if mentions(&code, name) {
                out.push(format!("{rel} uses {name}"));
            }
        }
    }
    out
}

#[test]
fn the_token_formats_do_no_io() {
    let bad = offenders(
        |rel| rel.starts_with("ucan/") || rel.starts_with("ucanto/"),
        &[
            "tokio", "axum", "sqlx", "rusqlite", "reqwest", "wasmtime", "hyper", "tower",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_the_server_knows_http_serving() {
    let bad = offenders(
        |rel| !rel.starts_with("server/"),
        &["axum", "tower_http", "hyper_util"],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_the_store_knows_sql() {
    let bad = offenders(|rel| !rel.starts_with("store/"), &["sqlx", "rusqlite"]);
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn executors_know_neither_the_gateway_nor_the_store_nor_the_policy() {
    let bad = offenders(
        |rel| rel.starts_with("exec/"),
        &[
            "crate::gateway",
            "crate::store",
            "crate::config",
            "crate::server",
        ],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn only_the_cli_uses_anyhow() {
    let bad = offenders(
        |rel| !(rel.starts_with("cli/") || rel == "main.rs"),
        &["anyhow"],
    );
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn the_checker_sees_what_it_looks_for() {
    // The rules above pass vacuously if `mentions` never matches; hold it to known cases.
    assert!(mentions("use axum::Router;", "axum"));
    assert!(mentions("let x = sqlx::query(q);", "sqlx"));
    assert!(mentions("use crate::store::Store;", "crate::store"));
    assert!(!mentions("use my_axum::Router;", "axum"));
    assert!(!offenders(|rel| rel.starts_with("server/"), &["axum"]).is_empty());
}
