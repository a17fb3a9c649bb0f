//! The web viewer in a real browser: `tests/browser/viewer.mjs` drives Debian's Chromium with
//! playwright-core against a gateway started here. It decodes a pasted pipeline container, follows
//! its receipts live over the event stream (the pipeline is posted only once the page says it is
//! waiting; the check fails if the page fell back to long polls) down to the join effect one step
//! set off, and, from a page on another port, posts a container and reads a receipt (which needs
//! CORS). Screenshots go to `target/browser/`.
//!
//! Needs node and `/usr/bin/chromium`; without them the run prints one SKIPPED line and they pass,
//! unless `UCAN_GATEWAY_REQUIRE_BROWSER=1` (set by `.ci/run`) makes a skip a failure. The npm
//! packages are installed with `npm ci` on first use.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::Mutex;

use ipld_core::ipld::Ipld;
use ucan_gateway::ucan::container::{Container, Format};

use super::effects::{
    add, awaiting, effect, invoke, map, pipeline, put_blob, returning, to_gateway,
};
use super::gateway::{ADD_WAT, args, container, gateway_with, post, wasm, world};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser package directory with its packages installed, or why the tests cannot run.
fn browser_dir() -> Result<PathBuf, String> {
    static INSTALL: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let mut state = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = state.as_ref() {
        return known.clone();
    }
    let found = (|| {
        if !Path::new(CHROMIUM).exists() {
            return Err(format!("{CHROMIUM} not found"));
        }
        let node = Process::new("node").arg("--version").output();
        if !node.is_ok_and(|o| o.status.success()) {
            return Err("node not found".to_owned());
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        if !dir
            .join("node_modules/playwright-core/package.json")
            .exists()
        {
            let status = Process::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("npm not found ({e})"))?;
            if !status.success() {
                return Err(format!("npm ci failed in {}", dir.display()));
            }
        }
        Ok(dir)
    })();
    if let Err(why) = &found {
        // One line for the whole run, however many browser tests ask; written to stderr itself,
        // since the test harness swallows eprintln! output of a passing test.
        let _ = writeln!(std::io::stderr(), "SKIPPED: browser tests ({why})");
    }
    *state = Some(found.clone());
    found
}

/// The directory, or `None` after a skip; a skip fails when the browser is required.
fn ready() -> Option<PathBuf> {
    match browser_dir() {
        Ok(dir) => Some(dir),
        Err(why) => {
            assert!(
                std::env::var("UCAN_GATEWAY_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "UCAN_GATEWAY_REQUIRE_BROWSER=1 but the browser tests cannot run: {why}"
            );
            None
        }
    }
}

fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("browser")
}

/// The script, started with `vars`; its stdin stays open for the `posted` signal.
fn script(dir: &Path, vars: &[(&str, String)]) -> std::process::Child {
    Process::new("node")
        .arg("viewer.mjs")
        .current_dir(dir)
        .env("OUT_DIR", screenshots())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs")
}

/// Reads result lines until `until` (a case name) or the end; asserts each one passed.
fn results(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    until: Option<&str>,
) -> Vec<String> {
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let name = value["case"].as_str().unwrap().to_owned();
        assert_eq!(value["ok"], true, "browser check {name} failed: {line}");
        seen.push(name.clone());
        if until == Some(name.as_str()) {
            break;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn the_viewer_decodes_a_container_and_follows_a_pipeline_live() {
    let Some(dir) = ready() else { return };
    let data = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(data.path(), &w.operator, "run_effects = true", "").await;
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));

    // Step one adds; step two awaits it and asks for a join effect, which the gateway runs.
    let first = invoke(
        &w,
        &gw,
        add(Ipld::Bytes(wasm(ADD_WAT)), 20.into(), 3.into()),
        b"s1",
    );
    let guest = returning(&map(vec![
        ("ucan/ok", Ipld::Integer(7)),
        ("ucan/fx", map(vec![("join", effect(adder, 1, b"j"))])),
    ]));
    let second = invoke(
        &w,
        &gw,
        args(vec![
            ("module", Ipld::Bytes(guest)),
            ("func", Ipld::String("add".into())),
            ("input", map(vec![("x", awaiting("await/ok", first.cid()))])),
        ]),
        b"s2",
    );
    let body = pipeline(&[&first, &second], &proofs);
    let pasted =
        String::from_utf8(Container::decode(&body).unwrap().encode(Format::Base64Std)).unwrap();
    let steps = serde_json::json!([
        { "cid": first.cid().to_string(), "out": 23 },
        { "cid": second.cid().to_string(), "out": 7 },
    ]);

    let mut child = script(
        &dir,
        &[
            ("CASE", "viewer".into()),
            ("GATEWAY_URL", format!("http://{}", gw.addr)),
            ("GATEWAY_DID", gw.did.clone()),
            ("CONTAINER", pasted),
            ("TOKENS", (2 + proofs.len()).to_string()),
            ("CHAIN_LINKS", (w.chain.len() + 1).to_string()),
            ("STEPS", steps.to_string()),
            ("EFFECT_OUT", "3".into()),
        ],
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let lines = tokio::task::spawn_blocking(move || {
        let seen = results(&mut lines, Some("waiting"));
        (seen, lines)
    });
    let (mut seen, mut lines) = lines.await.unwrap();
    assert_eq!(seen.last().map(String::as_str), Some("waiting"), "{seen:?}");

    let (status, answer) = post(&gw, body).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    writeln!(stdin, "posted").unwrap();
    let rest = tokio::task::spawn_blocking(move || results(&mut lines, None))
        .await
        .unwrap();
    seen.extend(rest);
    assert!(child.wait().unwrap().success());
    for name in [
        "decode",
        "chain",
        "receipts",
        "join effect",
        "stream",
        "typed cid",
        "no page errors",
    ] {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} not checked: {seen:?}"
        );
    }
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_on_another_origin_posts_and_reads_receipts() {
    let Some(dir) = ready() else { return };
    let data = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(data.path(), &w.operator, "", "").await;
    let module = Ipld::Bytes(wasm(ADD_WAT));
    let stored = invoke(&w, &gw, add(module.clone(), 2.into(), 40.into()), b"stored");
    let (status, _) = post(&gw, container(&stored, &w.chain)).await;
    assert_eq!(status, 200);
    let sent = invoke(&w, &gw, add(module, 2.into(), 40.into()), b"sent");
    // Plain base64 of the raw container, for the page's atob.
    let sent = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(container(&sent, &w.chain))
    };

    let mut child = script(
        &dir,
        &[
            ("CASE", "cross-origin".into()),
            ("GATEWAY_URL", format!("http://{}", gw.addr)),
            ("CROSS_CONTAINER", sent),
            ("CROSS_CID", stored.cid().to_string()),
            ("CROSS_OUT", "42".into()),
        ],
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let seen = tokio::task::spawn_blocking(move || results(&mut lines, None))
        .await
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(seen, ["cross-origin post", "cross-origin receipt read"]);
    gw.stop().await.unwrap();
}

/// Without a browser: the page and its assets come from the binary with a strict CSP, and
/// `POST /inspect` answers every input in the documented shapes.
#[tokio::test]
async fn the_viewer_is_served_and_inspect_answers_in_json() {
    let data = tempfile::tempdir().unwrap();
    let w = world();
    let gw = gateway_with(data.path(), &w.operator, "", "").await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert!(header("content-security-policy").contains("default-src 'none'"));
    }

    let inspect = |body: Vec<u8>| {
        let http = http.clone();
        let url = format!("{base}/inspect");
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            let status = r.status().as_u16();
            let json: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            (status, json)
        }
    };
    // A pasted base64 container with a trailing newline, as a terminal gives it.
    let inv = invoke(
        &w,
        &gw,
        add(Ipld::Bytes(wasm(ADD_WAT)), 1.into(), 2.into()),
        b"i",
    );
    let mut pasted = Container::decode(&container(&inv, &w.chain))
        .unwrap()
        .encode(Format::Base64Std);
    pasted.extend(b"\n");
    let (status, seen) = inspect(pasted).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["tokens"].as_array().unwrap().len(), 1 + w.chain.len());
    assert_eq!(seen["valid"], true);
    assert_eq!(seen["chains"][0]["invocation"], inv.cid().to_string());
    assert_eq!(
        seen["chains"][0]["links"].as_array().unwrap().len(),
        w.chain.len()
    );

    let (status, refused) = inspect(b"hello".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["name"], "MalformedContainer", "{refused}");
    let (status, refused) = inspect(vec![b'B'; 2 * 1024 * 1024]).await;
    assert_eq!(status, 413);
    assert_eq!(refused["error"]["name"], "PayloadTooLarge", "{refused}");
    gw.stop().await.unwrap();
}
