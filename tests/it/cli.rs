//! The CLI end to end, through the real binary: a root → app → third-party chain made with
//! `delegate` and `invoke` verifies with `verify`, and each kind of tampering is refused with its name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
}

/// A scratch directory removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ucan-gateway-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    let out = bin().args(args).output().expect("binary runs");
    assert!(
        out.status.code().is_some(),
        "{args:?} was killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keygen(dir: &Scratch, name: &str, alg: &str) -> (PathBuf, String) {
    let key = dir.path(&format!("{name}.key"));
    ok(&["key", "generate", "--alg", alg, "-o", key.to_str().unwrap()]);
    let did = ok(&["key", "did", key.to_str().unwrap()]).trim().to_owned();
    assert!(did.starts_with("did:key:z"), "{did}");
    (key, did)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Verifies and returns (exit code, parsed JSON line).
fn verify(args: &[&str]) -> (i32, serde_json::Value) {
    let out = run(&[&["verify"], args].concat());
    let line = String::from_utf8(out.stdout).unwrap();
    let json = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {line}"));
    (out.status.code().unwrap(), json)
}

fn error_name(json: &serde_json::Value) -> &str {
    json["error"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {json}"))
}

#[test]
fn delegation_chain_made_with_the_cli_verifies_and_tampering_is_refused() {
    let dir = Scratch::new("chain");
    let (root, root_did) = keygen(&dir, "root", "ed25519");
    let (app, app_did) = keygen(&dir, "app", "p256");
    let (friend, friend_did) = keygen(&dir, "friend", "secp256k1");
    let (_, stranger_did) = keygen(&dir, "stranger", "ed25519");

    let root_to_app = dir.path("root-to-app.ucan");
    ok(&[
        "delegate",
        "--key",
        s(&root),
        "--to",
        &app_did,
        "--cmd",
        "/wasm",
        "-o",
        s(&root_to_app),
    ]);
    let app_to_friend = dir.path("app-to-friend.ucan");
    ok(&[
        "delegate",
        "--key",
        s(&app),
        "--to",
        &friend_did,
        "--cmd",
        "/wasm/run",
        "--policy",
        r#"[["==", ".func", "add"]]"#,
        "--exp",
        "1h",
        "--proof",
        s(&root_to_app),
        "-o",
        s(&app_to_friend),
    ]);

    let invocation = dir.path("inv.ctn");
    let invoke = |args: &str, cmd: &str, exp: &str, out: &Path| {
        ok(&[
            "invoke",
            "--key",
            s(&friend),
            "--cmd",
            cmd,
            "--args",
            args,
            "--exp",
            exp,
            "--proof",
            s(&app_to_friend),
            "--proof",
            s(&root_to_app),
            "-o",
            s(out),
        ]);
    };
    invoke(
        r#"{"func": "add", "args": [1, 2]}"#,
        "/wasm/run",
        "5m",
        &invocation,
    );

    let (code, json) = verify(&["--invocation", s(&invocation)]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["ok"]["invoker"], friend_did.as_str());
    assert_eq!(
        json["ok"]["subject"],
        root_did.as_str(),
        "subject defaults to the chain's root"
    );
    assert_eq!(json["ok"]["command"], "/wasm/run");
    assert_eq!(json["ok"]["chain"].as_array().unwrap().len(), 2);

    // Violated policy.
    let bad = dir.path("policy.ctn");
    invoke(
        r#"{"func": "mul", "args": [1, 2]}"#,
        "/wasm/run",
        "5m",
        &bad,
    );
    let (code, json) = verify(&["--invocation", s(&bad)]);
    assert_eq!((code, error_name(&json)), (1, "MatchError"));

    // Escalated command: /wasm/run was delegated, /wasm/compile is not below it.
    let bad = dir.path("escalate.ctn");
    invoke(r#"{"func": "add"}"#, "/wasm/compile", "5m", &bad);
    let (code, json) = verify(&["--invocation", s(&bad)]);
    assert_eq!((code, error_name(&json)), (1, "InvalidClaim"));

    // Expired: valid now, refused two hours later (the app → friend link lasts one hour).
    let (code, json) = verify(&[
        "--invocation",
        s(&invocation),
        "--at",
        &(now() + 7200).to_string(),
    ]);
    assert_eq!((code, error_name(&json)), (1, "Expired"));

    // Wrong audience: the app's delegation goes to a stranger, but the friend invokes with it.
    let to_stranger = dir.path("app-to-stranger.ucan");
    ok(&[
        "delegate",
        "--key",
        s(&app),
        "--to",
        &stranger_did,
        "--cmd",
        "/wasm/run",
        "--proof",
        s(&root_to_app),
        "-o",
        s(&to_stranger),
    ]);
    let bad = dir.path("audience.ctn");
    ok(&[
        "invoke",
        "--key",
        s(&friend),
        "--cmd",
        "/wasm/run",
        "--args",
        "{}",
        "--sub",
        &root_did,
        "--proof",
        s(&root_to_app),
        "--proof",
        s(&to_stranger),
        "-o",
        s(&bad),
    ]);
    let (code, json) = verify(&["--invocation", s(&bad)]);
    assert_eq!((code, error_name(&json)), (1, "InvalidAudience"));

    // Flipped signature byte: raw invocation token with one bit of its signature changed.
    let raw = dir.path("inv-raw.ctn");
    ok(&[
        "invoke",
        "--key",
        s(&friend),
        "--cmd",
        "/wasm/run",
        "--args",
        r#"{"func": "add"}"#,
        "--proof",
        s(&app_to_friend),
        "--proof",
        s(&root_to_app),
        "--format",
        "raw",
        "-o",
        s(&raw),
    ]);
    let tokens = ucan_gateway::ucan::container::Container::decode(&std::fs::read(&raw).unwrap())
        .unwrap()
        .tokens;
    let mut inv_bytes = tokens
        .into_iter()
        .find(|t| ucan_gateway::ucan::Invocation::decode(t).is_ok())
        .expect("the container holds the invocation");
    let intact = dir.path("intact.ucan");
    std::fs::write(&intact, &inv_bytes).unwrap();
    inv_bytes[3 + 7] ^= 0x04;
    let flipped = dir.path("flipped.ucan");
    std::fs::write(&flipped, &inv_bytes).unwrap();
    let (code, json) = verify(&[
        "--invocation",
        s(&flipped),
        "--proof",
        s(&root_to_app),
        "--proof",
        s(&app_to_friend),
    ]);
    assert_eq!((code, error_name(&json)), (1, "InvalidSignature"));

    // Missing proof: the intact invocation alone.
    let (code, json) = verify(&["--invocation", s(&intact)]);
    assert_eq!((code, error_name(&json)), (1, "UnavailableProof"));
}

#[test]
fn delegate_refuses_to_extend_a_chain_that_does_not_reach_the_key() {
    let dir = Scratch::new("extend");
    let (root, _) = keygen(&dir, "root", "ed25519");
    let (app, app_did) = keygen(&dir, "app", "ed25519");
    let (other, _) = keygen(&dir, "other", "ed25519");
    let root_to_app = dir.path("root-to-app.ucan");
    ok(&[
        "delegate",
        "--key",
        s(&root),
        "--to",
        &app_did,
        "--cmd",
        "/wasm/run",
        "-o",
        s(&root_to_app),
    ]);
    // Someone else cannot build on the app's delegation…
    let out = run(&[
        "delegate",
        "--key",
        s(&other),
        "--to",
        &app_did,
        "--cmd",
        "/wasm/run",
        "--proof",
        s(&root_to_app),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // …and the app cannot widen it.
    let out = run(&[
        "delegate",
        "--key",
        s(&app),
        "--to",
        &app_did,
        "--cmd",
        "/wasm",
        "--proof",
        s(&root_to_app),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not cover"));
}

#[test]
fn usage_errors_exit_2_and_inspect_shows_tokens() {
    let dir = Scratch::new("usage");
    assert_eq!(
        run(&["verify", "--invocation", "/nonexistent/file"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["verify"]).status.code(),
        Some(2),
        "missing required flag"
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));

    let (key, did) = keygen(&dir, "k", "ed25519");
    let inv = dir.path("self.ctn");
    ok(&[
        "invoke",
        "--key",
        s(&key),
        "--cmd",
        "/echo",
        "--args",
        r#"{"hello": "world"}"#,
        "-o",
        s(&inv),
    ]);
    let (code, json) = verify(&["--invocation", s(&inv)]);
    assert_eq!(code, 0, "self-issued invocation: {json}");
    let shown = ok(&["inspect", s(&inv)]);
    let report: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(report["kind"], "invocation");
    assert_eq!(report["signature"], "valid");
    assert_eq!(report["payload"]["iss"], did.as_str());
    assert_eq!(report["payload"]["args"]["hello"], "world");
    assert!(report["cid"].as_str().unwrap().starts_with("bafy"));

    let garbage = dir.path("garbage");
    std::fs::write(&garbage, b"definitely not a token").unwrap();
    let (code, json) = verify(&["--invocation", s(&garbage)]);
    assert_eq!((code, error_name(&json)), (1, "MalformedToken"));
}

fn now() -> i64 {
    ucan_gateway::ucan::validate::unix_now()
}
