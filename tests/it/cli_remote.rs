//! The CLI against a running gateway: `invoke --url` checks the receipt against the gateway's DID,
//! `receipt` fetches it again, and `invoke --with` sends a two-step pipeline.

use ucan_gateway::did::{KeyAlg, SigningKey};

use super::gateway::{ADD_WAT, gateway, wasm};

#[tokio::test]
async fn the_cli_invokes_a_running_gateway_and_checks_its_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = gateway(dir.path(), &operator, "").await;
    let url = format!("http://{}", gw.addr);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("operator.key"), operator.to_key_file()).unwrap();
    let bin = env!("CARGO_BIN_EXE_ucan-gateway");
    let run = move |args: Vec<String>| {
        let out = std::process::Command::new(bin)
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let module = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(wasm(ADD_WAT))
    };
    let inv_args = format!(
        r#"{{"module": {{"/": {{"bytes": "{module}"}}}}, "func": "add", "args": [2, 40]}}"#
    );
    let (code, stdout, stderr) = tokio::task::spawn_blocking({
        let (url, key) = (url.clone(), path("operator.key"));
        move || {
            run(vec![
                "invoke".into(),
                "--key".into(),
                key,
                "--url".into(),
                url,
                "--cmd".into(),
                "/wasm/run".into(),
                "--args".into(),
                inv_args,
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let printed: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(printed["out"]["ok"], 42, "{printed}");
    let invocation = stderr.split_whitespace().nth(1).unwrap().to_owned();

    let (code, stdout, _) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run(vec!["receipt".into(), invocation, "--url".into(), url])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    let fetched: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(fetched["cid"], printed["cid"]);

    // A two-step pipeline: the first step written to a file, the second awaiting it, sent together.
    let step = |args: String, extra: Vec<String>| {
        let (key, did) = (path("operator.key"), gw.did.clone());
        let mut argv: Vec<String> = vec!["invoke".into(), "--key".into(), key, "--aud".into(), did];
        argv.extend(extra);
        argv.extend(["--cmd".into(), "/wasm/run".into(), "--args".into(), args]);
        tokio::task::spawn_blocking(move || run(argv))
    };
    let first_args = format!(
        r#"{{"module": {{"/": {{"bytes": "{module}"}}}}, "func": "add", "args": [20, 3]}}"#
    );
    let (code, _, stderr) = step(first_args, vec!["-o".into(), path("first.ctn")])
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let first = stderr.split_whitespace().nth(1).unwrap().to_owned();
    let second_args = format!(
        r#"{{"module": {{"/": {{"bytes": "{module}"}}}}, "func": "add", "args": [{{"await/ok": {{"/": "{first}"}}}}, 1]}}"#
    );
    let extra = vec![
        "--url".into(),
        url.clone(),
        "--with".into(),
        path("first.ctn"),
        "--output".into(),
        "json".into(),
    ];
    let (code, stdout, stderr) = step(second_args, extra).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    // Every step's receipt, in pipeline order, one JSON line each.
    let printed: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(printed.len(), 2, "{stdout}");
    assert_eq!(printed[0]["ran"], first, "{stdout}");
    assert_eq!(printed[0]["out"]["ok"], 23, "{stdout}");
    assert_eq!(printed[1]["out"]["ok"], 24, "{stdout}");

    // The README's offline chain (a root the gateway does not serve) is refused, and the CLI says
    // why and how to serve it; with no --proof at all, it says the proof is missing.
    std::fs::write(
        path("root.key"),
        SigningKey::generate(KeyAlg::Ed25519).to_key_file(),
    )
    .unwrap();
    std::fs::write(
        path("app.key"),
        SigningKey::generate(KeyAlg::P256).to_key_file(),
    )
    .unwrap();
    let (code, _, stderr) = tokio::task::spawn_blocking({
        let (root, app) = (path("root.key"), path("app.key"));
        let out = path("root-to-app.ucan");
        move || {
            let app_did = SigningKey::from_key_file(&std::fs::read_to_string(&app).unwrap())
                .unwrap()
                .did();
            run(vec![
                "delegate".into(),
                "--key".into(),
                root,
                "--to".into(),
                app_did,
                "--cmd".into(),
                "/wasm".into(),
                "-o".into(),
                out,
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let refused = |proof: Option<String>| {
        let (app, url) = (path("app.key"), url.clone());
        tokio::task::spawn_blocking(move || {
            let mut argv: Vec<String> = vec![
                "invoke".into(),
                "--key".into(),
                app,
                "--url".into(),
                url,
                "--cmd".into(),
                "/wasm/run".into(),
            ];
            argv.extend(proof.into_iter().flat_map(|p| ["--proof".into(), p]));
            run(argv)
        })
    };
    let (code, stdout, stderr) = refused(Some(path("root-to-app.ucan"))).await.unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.contains("InvalidSubject"), "{stdout}");
    assert!(
        stderr.contains("hint: this gateway acts only for") && stderr.contains("`subjects`"),
        "{stderr}"
    );
    let (code, stdout, stderr) = refused(None).await.unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.contains("InvalidSubject"), "{stdout}");
    assert!(stderr.contains("--proof FILE"), "{stderr}");
    gw.stop().await.unwrap();
}
