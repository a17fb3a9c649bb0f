//! CLI conventions through the real binary: `--output json` on every command that prints a result,
//! `key generate` never replacing a key unless forced, one grammar for `--exp`/`--nbf` with useless
//! expiries refused in readable times, completions and a man page, the hint for a missing proof, and
//! `serve` refusing a worker count of zero.

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed and print exactly one JSON line.
fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = run(dir, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{args:?} printed {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

#[test]
fn key_generate_refuses_to_replace_a_key_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = json(d, &["key", "generate", "-o", "app.key", "--output", "json"]);
    let before = std::fs::read_to_string(d.join("app.key")).unwrap();

    let again = run(d, &["key", "generate", "-o", "app.key"]);
    assert_eq!(again.status.code(), Some(2));
    let err = text(&again.stderr);
    assert!(
        err.contains("app.key already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(d.join("app.key")).unwrap(), before);

    let forced = json(
        d,
        &[
            "key", "generate", "-o", "app.key", "--force", "--output", "json",
        ],
    );
    assert_ne!(forced["did"], first["did"]);
    assert_eq!(
        json(d, &["key", "did", "app.key", "--output", "json"])["did"],
        forced["did"]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("app.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn every_command_that_prints_a_result_has_json_output() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = json(d, &["key", "generate", "--output", "json"]);
    assert_eq!(key["alg"], "ed25519");
    assert!(key["key"].as_str().unwrap().len() > 40, "{key}");
    std::fs::write(d.join("root.key"), key["key"].as_str().unwrap()).unwrap();
    let did = json(d, &["key", "did", "root.key", "--output", "json"])["did"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(key["did"], did);

    // A delegation on standard output is base64 in the JSON line; written to a file, it is named.
    let dlg = json(
        d,
        &[
            "delegate", "--key", "root.key", "--to", &did, "--cmd", "/wasm", "--output", "json",
        ],
    );
    assert_eq!(
        (dlg["iss"].as_str(), dlg["cmd"].as_str()),
        (Some(&*did), Some("/wasm"))
    );
    let token = base64::engine::general_purpose::STANDARD
        .decode(dlg["token"].as_str().unwrap())
        .unwrap();
    std::fs::write(d.join("dlg.ucan"), &token).unwrap();
    let seen = json(d, &["inspect", "dlg.ucan", "--output", "json"]);
    assert_eq!(seen["tokens"][0]["cid"], dlg["cid"]);
    assert_eq!(seen["tokens"][0]["signature"], "valid");

    let inv = json(
        d,
        &[
            "invoke",
            "--key",
            "root.key",
            "--cmd",
            "/wasm/run",
            "--proof",
            "dlg.ucan",
            "-o",
            "inv.ctn",
            "--output",
            "json",
        ],
    );
    assert_eq!(inv["file"], "inv.ctn");
    let seen = json(d, &["inspect", "inv.ctn", "--output", "json"]);
    let chain = &seen["chains"][0];
    assert_eq!(chain["invocation"], inv["invocation"]);
    assert_eq!(chain["links"][0]["cid"], dlg["cid"]);
    let verdict = json(
        d,
        &["verify", "--invocation", "inv.ctn", "--output", "json"],
    );
    assert_eq!(verdict["ok"]["invocation"], inv["invocation"]);
}

#[test]
fn exp_and_nbf_share_one_grammar_and_useless_expiries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json(d, &["key", "generate", "-o", "k.key", "--output", "json"]);
    let did = json(d, &["key", "did", "k.key", "--output", "json"])["did"]
        .as_str()
        .unwrap()
        .to_owned();
    let delegate = |extra: &[&str]| {
        let mut args = vec!["delegate", "--key", "k.key", "--to", &did, "--cmd", "/"];
        args.extend_from_slice(extra);
        run(d, &args)
    };

    for exp in ["0s", "1000"] {
        let out = delegate(&["--exp", exp]);
        assert_eq!(out.status.code(), Some(2), "--exp {exp}");
        let err = text(&out.stderr);
        assert!(
            err.contains("not in the future") && err.contains("--force"),
            "{err}"
        );
    }
    let err = text(&delegate(&["--exp", "1000"]).stderr);
    assert!(err.contains("1000 (1970-01-01T00:16:40Z)"), "{err}");
    let err = text(&delegate(&["--exp", "1h", "--nbf", "2h"]).stderr);
    assert!(err.contains("not after --nbf"), "{err}");
    let out = run(
        d,
        &["invoke", "--key", "k.key", "--cmd", "/x", "--exp", "0s"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("not in the future") && err.contains("Z)"),
        "{err}"
    );

    // Durations and Unix times for both flags; --force makes what it is told.
    let nbf = "4102444800"; // 2100-01-01T00:00:00Z
    let made = delegate(&["--exp", "4102448400", "--nbf", nbf, "--output", "json"]);
    assert!(made.status.success(), "{}", text(&made.stderr));
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(
        (made["exp"].as_i64(), made["nbf"].as_i64()),
        (Some(4102448400), Some(4102444800))
    );
    let made: serde_json::Value = serde_json::from_slice(
        &delegate(&["--exp", "2h", "--nbf", "1h", "--output", "json"]).stdout,
    )
    .unwrap();
    assert_eq!(
        made["exp"].as_i64().unwrap() - made["nbf"].as_i64().unwrap(),
        3600
    );
    let forced = delegate(&["--exp", "0s", "--force", "--output", "json"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
}

#[test]
fn completions_man_page_and_help_come_from_the_parser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(d, &["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains("delegate") && script.contains("--proof"),
            "{shell}"
        );
    }
    let man = text(&run(d, &["man"]).stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH"),
        "{}",
        &man[..200.min(man.len())]
    );
    for section in [
        "UCAN-GATEWAY KEY GENERATE",
        "UCAN-GATEWAY INVOKE",
        "UCAN-GATEWAY RECEIPT",
    ] {
        assert!(man.contains(section), "no {section} in the man page");
    }
    let help = text(&run(d, &["--help"]).stdout);
    assert!(
        help.contains("receipts") && help.contains("--tree"),
        "{help}"
    );
    let help = text(&run(d, &["receipt", "--help"]).stdout);
    assert!(help.contains("--tree") && help.contains("--dot"), "{help}");
    let help = text(&run(d, &["invoke", "--help"]).stdout);
    assert!(help.contains("Default: five minutes"), "{help}");
}

#[test]
fn verify_says_when_a_refusal_is_likely_a_missing_proof() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json(
        d,
        &["key", "generate", "-o", "root.key", "--output", "json"],
    );
    json(d, &["key", "generate", "-o", "app.key", "--output", "json"]);
    let root = json(d, &["key", "did", "root.key", "--output", "json"])["did"]
        .as_str()
        .unwrap()
        .to_owned();
    let made = run(
        d,
        &[
            "invoke",
            "--key",
            "app.key",
            "--sub",
            &root,
            "--cmd",
            "/wasm/run",
            "-o",
            "inv.ctn",
        ],
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let out = run(d, &["verify", "--invocation", "inv.ctn"]);
    assert_eq!(out.status.code(), Some(1));
    // No proofs, and the invoker is not the subject: nothing establishes its authority.
    assert!(
        text(&out.stdout).contains("InvalidClaim"),
        "{}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(err.contains("hint:") && err.contains("--proof"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_exits_0_only_for_a_2xx_answer() {
    use ucan_gateway::did::{KeyAlg, SigningKey};
    let dir = tempfile::tempdir().unwrap();
    let gw = super::gateway::gateway(dir.path(), &SigningKey::generate(KeyAlg::Ed25519), "").await;
    // A port nothing listens on: bind one, then let it go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cases = [
        (format!("http://{}/health", gw.addr), 0),
        (format!("http://{}/no/such/path", gw.addr), 1),
        (format!("http://{closed}/health"), 1),
    ];
    for (url, code) in cases {
        let d = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            run(&d, &["probe", &url, "--timeout", "2s", "--output", "json"])
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stdout));
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(said["healthy"], code == 0);
    }
    gw.stop().await.unwrap();
}

#[test]
fn serve_refuses_zero_worker_threads_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = run(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--worker-threads",
            "0",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--worker-threads"),
        "{}",
        text(&out.stderr)
    );
    // Refused by the parser: nothing was created.
    assert!(!dir.path().join("data").exists());
}
