//! Proofs by reference over real HTTP: the chain of an accepted invocation is kept, delegations can
//! be uploaded ahead of time (`POST /delegations`), an invocation citing proofs by CID alone is
//! completed from the store, and what is still missing is a 510 listing exactly those CIDs.

use std::collections::BTreeSet;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::gateway::MAX_PROOFS_PER_ISSUER;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Delegation};

use super::gateway::{
    ADD_WAT, World, add_args, args, container, gateway, invoke, post, receipt, refused, wasm, world,
};

/// Posts `delegations` to `POST /delegations`: status and JSON body.
async fn upload(gw: &Running, delegations: &[Delegation]) -> (u16, serde_json::Value) {
    let mut c = Container::default();
    c.tokens
        .extend(delegations.iter().map(|d| d.bytes().to_vec()));
    upload_bytes(gw, c.encode(Format::Raw)).await
}

async fn upload_bytes(gw: &Running, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/delegations", gw.addr))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    (status, json)
}

/// Posts an invocation and expects 510 `UnavailableProof`; the CIDs it names as missing.
async fn missing(gw: &Running, body: Vec<u8>) -> BTreeSet<String> {
    let (status, bytes) = post(gw, body).await;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (510, Some("UnavailableProof")),
        "{json}"
    );
    json["error"]["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

fn cids(delegations: &[&Delegation]) -> BTreeSet<String> {
    delegations.iter().map(|d| d.cid().to_string()).collect()
}

fn add(w: &World, gw: &Running, a: i128) -> ucan_gateway::ucan::Invocation {
    invoke(w, gw, "/wasm/run", add_args(wasm(ADD_WAT), a, 1))
}

#[tokio::test]
async fn missing_proofs_are_a_510_naming_exactly_those() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let (root, leaf) = (&w.chain[0], &w.chain[1]);

    // Nothing kept yet: both are missing.
    assert_eq!(
        missing(&gw, container(&add(&w, &gw, 1), &[])).await,
        cids(&[root, leaf])
    );
    // With the root sent, only the leaf is.
    assert_eq!(
        missing(&gw, container(&add(&w, &gw, 2), &w.chain[..1])).await,
        cids(&[leaf])
    );
    // Resending with exactly the missing ones works; a refusal consumed no replay slot, so the
    // same invocation goes through.
    let inv = add(&w, &gw, 3);
    assert_eq!(
        missing(&gw, container(&inv, &[])).await,
        cids(&[root, leaf])
    );
    let r = receipt(&gw, container(&inv, &w.chain)).await;
    assert!(r.body.out.is_ok());
    // The 510 goes after the invocation's own checks: a bad invocation signature is still a 401.
    let forged = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(wasm(ADD_WAT), 1, 1),
    )
    .audience(gw.did.clone())
    .proofs(vec![ucan_gateway::ipld::cid_for(
        ucan_gateway::ipld::RAW,
        b"never kept",
    )])
    .expires(Some(unix_now() + 300))
    .sign(&w.friend)
    .unwrap();
    let mut bytes = forged.bytes().to_vec();
    bytes[10] ^= 1;
    let mut c = Container::default();
    c.tokens.push(bytes);
    refused(&gw, c.encode(Format::Raw), 401, "InvalidSignature").await;
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_chain_of_an_accepted_invocation_is_kept_for_later_ones_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let r = receipt(&gw, container(&add(&w, &gw, 1), &w.chain)).await;
    assert!(r.body.out.is_ok());
    // Cited by CID alone from now on.
    let r = receipt(&gw, container(&add(&w, &gw, 2), &[])).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    gw.stop().await.unwrap();

    // Kept in the store, not in the process: a restarted gateway has them.
    let gw = gateway(dir.path(), &w.operator, "").await;
    let r = receipt(&gw, container(&add(&w, &gw, 3), &[])).await;
    assert!(r.body.out.is_ok());
    // A refused invocation keeps nothing: another world's chain sent with a bad invocation.
    let other = world();
    let wrong_cmd = invoke(&other, &gw, "/blob/put", args(vec![]));
    let (status, _) = post(&gw, container(&wrong_cmd, &other.chain)).await;
    assert_ne!(status, 200);
    assert_eq!(
        missing(&gw, container(&add(&other, &gw, 4), &[])).await,
        cids(&[&other.chain[0], &other.chain[1]])
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn uploaded_delegations_complete_invocations_that_cite_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let (status, json) = upload(&gw, &w.chain).await;
    assert_eq!(status, 200, "{json}");
    let kept: BTreeSet<String> = json["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kept, cids(&[&w.chain[0], &w.chain[1]]));
    let r = receipt(&gw, container(&add(&w, &gw, 1), &[])).await;
    assert!(r.body.out.is_ok());
    // Uploading again is a no-op that still answers with them.
    let (status, _) = upload(&gw, &w.chain).await;
    assert_eq!(status, 200);

    // Once the root is kept, a leaf whose issuer it delegates to can be uploaded on its own.
    let other_friend = SigningKey::generate(KeyAlg::Ed25519);
    let leaf = DelegationBuilder::new(
        other_friend.did(),
        Some(w.operator.did()),
        Command::parse("/wasm/run").unwrap(),
    )
    .expires(Some(unix_now() + 3600))
    .sign(&w.app)
    .unwrap();
    let (status, json) = upload(&gw, std::slice::from_ref(&leaf)).await;
    assert_eq!(status, 200, "{json}");
    let inv = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/wasm/run").unwrap(),
        add_args(wasm(ADD_WAT), 5, 5),
    )
    .audience(gw.did.clone())
    .proofs(vec![w.chain[0].cid(), leaf.cid()])
    .expires(Some(unix_now() + 300))
    .sign(&other_friend)
    .unwrap();
    let r = receipt(&gw, container(&inv, &[])).await;
    assert!(r.body.out.is_ok(), "{:?}", r.body.out);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_are_checked_and_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let stranger = SigningKey::generate(KeyAlg::Ed25519);
    let exp = Some(unix_now() + 3600);
    let delegate = |sub: Option<String>, by: &SigningKey, to: String, exp: Option<i64>| {
        DelegationBuilder::new(to, sub, Command::parse("/wasm/run").unwrap())
            .expires(exp)
            .sign(by)
            .unwrap()
    };
    let check = |json: &serde_json::Value, name: &str| {
        assert_eq!(json["error"]["name"], name, "{json}");
    };

    // Expired (well past the leeway).
    let expired = delegate(
        Some(w.operator.did()),
        &w.operator,
        w.app.did(),
        Some(unix_now() - 3600),
    );
    let (status, json) = upload(&gw, &[w.chain[0].clone(), expired]).await;
    assert_eq!(status, 403);
    check(&json, "Expired");

    // A subject this gateway does not act for.
    let foreign = delegate(Some(stranger.did()), &stranger, w.app.did(), exp);
    let (status, json) = upload(&gw, &[foreign]).await;
    assert_eq!(status, 403);
    check(&json, "InvalidSubject");

    // Claiming an honoured subject proves nothing: nothing delegates to the stranger.
    let unrooted = delegate(Some(w.operator.did()), &stranger, w.friend.did(), exp);
    let (status, json) = upload(&gw, &[unrooted]).await;
    assert_eq!(status, 403);
    check(&json, "InvalidClaim");
    // Nor a powerline from the stranger.
    let powerline = delegate(None, &stranger, w.friend.did(), exp);
    let (status, json) = upload(&gw, &[powerline]).await;
    assert_eq!(status, 403);
    check(&json, "InvalidClaim");

    // A signature that does not verify.
    let mut forged = w.chain[0].bytes().to_vec();
    forged[10] ^= 1;
    let mut c = Container::default();
    c.tokens.push(forged);
    let (status, json) = upload_bytes(&gw, c.encode(Format::Raw)).await;
    assert_eq!(status, 401);
    check(&json, "InvalidSignature");

    // Invocations go elsewhere.
    let (status, json) = upload_bytes(&gw, container(&add(&w, &gw, 1), &w.chain)).await;
    assert_eq!(status, 400);
    check(&json, "MalformedContainer");

    // Nothing of the refused uploads was kept: the chain is still missing.
    assert_eq!(
        missing(&gw, container(&add(&w, &gw, 2), &[])).await,
        cids(&[&w.chain[0], &w.chain[1]])
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn revoked_proofs_are_never_used_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let (status, _) = upload(&gw, &w.chain).await;
    assert_eq!(status, 200);
    let leaf = &w.chain[1];
    let revoke = InvocationBuilder::new(
        w.operator.did(),
        Command::parse("/ucan/revoke").unwrap(),
        args(vec![("revoke", Ipld::Link(leaf.cid()))]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(&w.app)
    .unwrap();
    let r = receipt(&gw, container(&revoke, &w.chain)).await;
    assert!(r.body.out.is_ok());
    // The kept leaf is not used: it is missing, and sent along it is refused as revoked.
    assert_eq!(
        missing(&gw, container(&add(&w, &gw, 1), &[])).await,
        cids(&[leaf])
    );
    refused(&gw, container(&add(&w, &gw, 2), &w.chain), 403, "Revoked").await;
    // Nor can it be uploaded again.
    let (status, json) = upload(&gw, &w.chain).await;
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (403, Some("Revoked"))
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn an_issuer_keeps_at_most_its_cap_of_delegations() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let exp = Some(unix_now() + 3600);
    let roots: Vec<Delegation> = (0..=MAX_PROOFS_PER_ISSUER)
        .map(|_| {
            let to = SigningKey::generate(KeyAlg::Ed25519);
            DelegationBuilder::new(
                to.did(),
                Some(w.operator.did()),
                Command::parse("/wasm/run").unwrap(),
            )
            .expires(exp)
            .sign(&w.operator)
            .unwrap()
        })
        .collect();
    // One past the cap in one upload: refused, nothing kept.
    let (status, json) = upload(&gw, &roots).await;
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (400, Some("TooManyDelegations")),
        "{json}"
    );
    // Exactly the cap: kept.
    let (status, json) = upload(&gw, &roots[..MAX_PROOFS_PER_ISSUER]).await;
    assert_eq!(status, 200, "{json}");
    // One more later: refused; the ones kept can still be sent again.
    let (status, json) = upload(&gw, &roots[MAX_PROOFS_PER_ISSUER..]).await;
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (400, Some("TooManyDelegations"))
    );
    let (status, _) = upload(&gw, &roots[..1]).await;
    assert_eq!(status, 200);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_cli_sends_proofs_by_reference_and_resends_the_missing_ones_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway(dir.path(), &w.operator, "").await;
    let url = format!("http://{}", gw.addr);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    std::fs::write(path("friend.key"), w.friend.to_key_file()).unwrap();
    std::fs::write(path("root.ucan"), w.chain[0].bytes()).unwrap();
    std::fs::write(path("leaf.ucan"), w.chain[1].bytes()).unwrap();
    let module = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(wasm(ADD_WAT))
    };
    let run = |a: i32| {
        let argv: Vec<String> = vec![
            "invoke".into(),
            "--key".into(),
            path("friend.key"),
            "--url".into(),
            url.clone(),
            "--cmd".into(),
            "/wasm/run".into(),
            "--args".into(),
            format!(
                r#"{{"module": {{"/": {{"bytes": "{module}"}}}}, "func": "add", "args": [{a}, 1]}}"#
            ),
            "--proof".into(),
            path("root.ucan"),
            "--proof".into(),
            path("leaf.ucan"),
            "--proof-by-reference".into(),
        ];
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
                .args(&argv)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8(out.stdout).unwrap(),
                String::from_utf8(out.stderr).unwrap(),
            )
        })
    };
    // The gateway holds neither: the first answer is a 510, and the CLI sends both once more.
    let (code, stdout, stderr) = run(1).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("lacks 2 of the proofs"), "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["out"]["ok"], 2, "{printed}");
    // It keeps them now: CIDs alone suffice.
    let (code, stdout, stderr) = run(41).await.unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("lacks"), "{stderr}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["out"]["ok"], 42, "{printed}");
    gw.stop().await.unwrap();
}
