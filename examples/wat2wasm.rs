//! Compiles the example guests from WAT text to the binary modules the engine runs:
//! `cargo run --example wat2wasm -- examples/guests/*.wat` writes each `NAME.wasm` beside its
//! `NAME.wat`. The repository ships the results too; a test holds them to their sources.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: wat2wasm FILE.wat...");
        return ExitCode::from(2);
    }
    for file in &files {
        let path = Path::new(file);
        match wat::parse_file(path) {
            Ok(bytes) => {
                let out = path.with_extension("wasm");
                if let Err(e) = std::fs::write(&out, &bytes) {
                    eprintln!("{}: {e}", out.display());
                    return ExitCode::FAILURE;
                }
                println!("{} ({} bytes)", out.display(), bytes.len());
            }
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
