//! Live workflow streams over real HTTP: `GET /receipts/{cid}/events` sends the receipt, then each
//! receipt of its effects as it is stored (on this replica or another sharing the store), then
//! `end`; heartbeats while quiet; `Last-Event-ID` resumption; with `wait`, a receipt still to
//! come waited for; a cap on open streams; the end on shutdown.

use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::{HttpArgs, Running};
use ucan_gateway::ucan::Invocation;
use ucan_gateway::ucan::container::{Container, Format};

use super::effects::{abi, add, effect, invoke, put_blob, reply, requesting, to_gateway};
use super::gateway::{
    ADD_WAT, World, container, receipt, replica_store, serve_policy_on, serve_policy_with, wasm,
    world, write_policy,
};

/// One thing read from an event stream.
#[derive(Debug, PartialEq)]
enum Item {
    /// An event: its type, id and JSON data.
    Event {
        event: String,
        id: Option<String>,
        data: serde_json::Value,
    },
    /// A comment (a heartbeat).
    Comment,
}

/// Reads an event stream item by item.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(
        gw: &Running,
        cid: &str,
        last: Option<&str>,
    ) -> Result<Stream, (u16, serde_json::Value)> {
        Stream::get(gw, &format!("{cid}/events"), last).await
    }

    /// Opens `GET /receipts/{path}`: the CID, `/events` and any query.
    async fn get(
        gw: &Running,
        path: &str,
        last: Option<&str>,
    ) -> Result<Stream, (u16, serde_json::Value)> {
        let mut request = reqwest::Client::new().get(format!("http://{}/receipts/{path}", gw.addr));
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            let json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            return Err((status, json));
        }
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Ok(Stream {
            response,
            buffer: String::new(),
        })
    }

    /// The next item, or `None` when the stream has ended (10 s at most).
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("the stream went quiet")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, skipping heartbeats.
    async fn event(&mut self) -> Option<(String, Option<String>, serde_json::Value)> {
        loop {
            match self.next().await? {
                Item::Comment => continue,
                Item::Event { event, id, data } => return Some((event, id, data)),
            }
        }
    }
}

fn parse(block: &str) -> Item {
    let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
    let mut comment = true;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        comment = false;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "id" => id = Some(value.to_owned()),
            "data" => data.push_str(value),
            _ => {}
        }
    }
    if comment {
        return Item::Comment;
    }
    Item::Event {
        event,
        id,
        data: serde_json::from_str(&data).unwrap_or_else(|e| panic!("{e}: {block:?}")),
    }
}

/// A gateway with these edge settings.
async fn serve(dir: &std::path::Path, w: &World, http: HttpArgs) -> Running {
    serve_policy_with(dir, write_policy(dir, &w.operator, "", ""), http).await
}

/// Submits an effect invocation as the client would, with every delegation it may need.
async fn submit(
    gw: &Running,
    fx: &Invocation,
    proofs: &[ucan_gateway::ucan::Delegation],
) -> String {
    let mut c = Container::default();
    c.tokens.push(fx.bytes().to_vec());
    c.tokens.extend(proofs.iter().map(|d| d.bytes().to_vec()));
    receipt(gw, c.encode(Format::Raw)).await.cid().to_string()
}

#[tokio::test]
async fn a_workflow_streams_its_receipts_as_they_are_stored_on_any_replica_then_settles() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let http = HttpArgs {
        stream_heartbeat: Duration::from_millis(200),
        ..HttpArgs::default()
    };
    // Two replicas sharing one store (and the key, kept in the same data directory).
    let store = replica_store().await;
    let policy = write_policy(dir.path(), &w.operator, "", "");
    let gw = serve_policy_on(dir.path(), policy.clone(), http.clone(), store.clone()).await;
    let other = serve_policy_on(dir.path(), policy, http, store).await;
    assert_eq!(other.did, gw.did);

    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let guest = requesting(vec![effect(adder, 1, b"a"), effect(adder, 2, b"b")]);
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let (receipts, effects, delegations) = reply(&gw, container(&inv, &proofs)).await;
    assert_eq!(effects.len(), 2);
    proofs.extend(delegations.into_values());
    let root = receipts[0].cid().to_string();

    // The receipt first, then heartbeats while nothing else is stored.
    let mut stream = Stream::open(&gw, &inv.cid().to_string(), None)
        .await
        .unwrap();
    let (event, id, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), id.as_deref()),
        ("receipt", Some(root.as_str()))
    );
    assert_eq!(data["ran"], inv.cid().to_string());
    assert_eq!(data["out"]["ok"], 7);
    assert_eq!(stream.next().await, Some(Item::Comment));

    // Each effect's receipt as it is stored: one here, one on the other replica.
    let first = submit(&gw, &effects[0], &proofs).await;
    let (event, id, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), id.as_deref()),
        ("receipt", Some(first.as_str()))
    );
    assert_eq!(data["ran"], effects[0].cid().to_string());
    let second = submit(&other, &effects[1], &proofs).await;
    let (event, id, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), id.as_deref()),
        ("receipt", Some(second.as_str()))
    );
    assert_eq!(data["ran"], effects[1].cid().to_string());
    // Every effect has its receipt: the workflow has settled, and the stream ends.
    let (event, _, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), &data),
        ("end", &serde_json::json!({"reason": "settled"}))
    );
    assert_eq!(stream.event().await, None);

    // Resumed after the first effect's receipt: neither it nor the receipt it descends from again.
    let mut resumed = Stream::open(&other, &inv.cid().to_string(), Some(&first))
        .await
        .unwrap();
    let (_, id, _) = resumed.event().await.unwrap();
    assert_eq!(id.as_deref(), Some(second.as_str()));
    assert_eq!(resumed.event().await.unwrap().0, "end");
    // Resumed after the first receipt: both effects, in either order.
    let mut resumed = Stream::open(&gw, &root, Some(&root)).await.unwrap();
    let mut ids = vec![
        resumed.event().await.unwrap().1.unwrap(),
        resumed.event().await.unwrap().1.unwrap(),
    ];
    ids.sort();
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(resumed.event().await.unwrap().0, "end");

    gw.stop().await.unwrap();
    other.stop().await.unwrap();
}

#[tokio::test]
async fn streams_are_capped_unknown_receipts_are_404_and_shutdown_ends_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let http = HttpArgs {
        max_streams: 1,
        ..HttpArgs::default()
    };
    let gw = serve(dir.path(), &w, http).await;

    // Nothing stored under the CID: 404, and the slot is free again.
    let unknown = ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, b"never ran");
    let (status, json) = Stream::open(&gw, &unknown.to_string(), None)
        .await
        .err()
        .unwrap();
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (404, Some("NotFound"))
    );
    let (status, json) = Stream::open(&gw, "not-a-cid", None).await.err().unwrap();
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (400, Some("MalformedCid"))
    );

    // A workflow that will not settle: its effect is never submitted.
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let guest = requesting(vec![effect(adder, 1, b"a")]);
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    reply(&gw, container(&inv, &proofs)).await;
    let mut open = Stream::open(&gw, &inv.cid().to_string(), None)
        .await
        .unwrap();
    assert_eq!(open.event().await.unwrap().0, "receipt");

    // One stream is the cap.
    let response = reqwest::get(format!("http://{}/receipts/{}/events", gw.addr, inv.cid()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(json["error"]["name"], "TooManyStreams");

    // Shutting down ends the stream with its reason, and shutdown does not wait for it.
    let stopping = tokio::spawn(gw.stop());
    let (event, _, data) = open.event().await.unwrap();
    assert_eq!(
        (event.as_str(), &data),
        ("end", &serde_json::json!({"reason": "shutdown"}))
    );
    assert_eq!(open.event().await, None);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finishes")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn with_wait_a_stream_waits_for_a_receipt_still_to_come() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let http = HttpArgs {
        stream_heartbeat: Duration::from_millis(200),
        ..HttpArgs::default()
    };
    let gw = serve(dir.path(), &w, http).await;
    let inv = invoke(
        &w,
        &gw,
        add(Ipld::Bytes(wasm(ADD_WAT)), 20.into(), 3.into()),
        b"later",
    );

    // Followed before it is sent: heartbeats while waiting, then its receipt once stored.
    let mut stream = Stream::get(&gw, &format!("{}/events?wait=30", inv.cid()), None)
        .await
        .unwrap();
    assert_eq!(stream.next().await, Some(Item::Comment));
    let stored = receipt(&gw, container(&inv, &w.chain)).await;
    let (event, id, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), id),
        ("receipt", Some(stored.cid().to_string()))
    );
    assert_eq!(data["out"]["ok"], 23);
    let (event, _, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), &data),
        ("end", &serde_json::json!({"reason": "settled"}))
    );
    assert_eq!(stream.event().await, None);

    // A receipt that never comes: the stream ends with `missing` once the wait is over.
    let unknown = ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, b"never ran");
    let started = std::time::Instant::now();
    let mut stream = Stream::get(&gw, &format!("{unknown}/events?wait=1"), None)
        .await
        .unwrap();
    let (event, _, data) = stream.event().await.unwrap();
    assert_eq!(
        (event.as_str(), &data),
        ("end", &serde_json::json!({"reason": "missing"}))
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(stream.event().await, None);
    // Without `wait` (or with 0) it is 404 as before; a wait past the longest is refused.
    for query in ["", "?wait=0"] {
        let (status, _) = Stream::get(&gw, &format!("{unknown}/events{query}"), None)
            .await
            .err()
            .unwrap();
        assert_eq!(status, 404, "{query}");
    }
    for query in ["wait=121", "wait=abc", "wait=-1", "wait="] {
        let (status, json) = Stream::get(&gw, &format!("{unknown}/events?{query}"), None)
            .await
            .err()
            .unwrap();
        assert_eq!(
            (status, json["error"]["name"].as_str()),
            (400, Some("InvalidQuery")),
            "{query}"
        );
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_waiting_stream_holds_its_slot_and_ends_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let http = HttpArgs {
        max_streams: 1,
        stream_heartbeat: Duration::from_millis(200),
        ..HttpArgs::default()
    };
    let gw = serve(dir.path(), &w, http).await;
    let unknown = ucan_gateway::ipld::cid_for(ucan_gateway::ipld::RAW, b"not yet");
    let path = format!("{unknown}/events?wait=120");
    let mut waiting = Stream::get(&gw, &path, None).await.unwrap();
    assert_eq!(waiting.next().await, Some(Item::Comment));

    // Waiting counts towards the cap, so waits cannot pile up past it.
    let (status, json) = Stream::get(&gw, &path, None).await.err().unwrap();
    assert_eq!(
        (status, json["error"]["name"].as_str()),
        (503, Some("TooManyStreams"))
    );

    // Shutdown ends the wait at once, with its reason.
    let stopping = tokio::spawn(gw.stop());
    let (event, _, data) = waiting.event().await.unwrap();
    assert_eq!(
        (event.as_str(), &data),
        ("end", &serde_json::json!({"reason": "shutdown"}))
    );
    assert_eq!(waiting.event().await, None);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown finishes")
        .unwrap()
        .unwrap();
}

/// `receipts CID --tree --follow` (with `--wait SECONDS` if given) against `gw`, running.
fn follow_cli(gw: &Running, cid: &str, wait: Option<&str>) -> std::process::Child {
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_ucan-gateway"));
    cli.args(["receipts", cid, "--tree", "--follow"])
        .args(["--url", &format!("http://{}", gw.addr)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(wait) = wait {
        cli.args(["--wait", wait]);
    }
    cli.spawn().unwrap()
}

/// What the CLI printed once it ended: its status and its standard output and error.
async fn ended(child: std::process::Child) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()),
    )
    .await
    .expect("the CLI ends")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_follows_the_tree_as_it_grows() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = serve(dir.path(), &w, HttpArgs::default()).await;
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let guest = requesting(vec![effect(adder, 1, b"a"), effect(adder, 2, b"b")]);
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let (_, effects, delegations) = reply(&gw, container(&inv, &proofs)).await;
    proofs.extend(delegations.into_values());

    let child = follow_cli(&gw, &inv.cid().to_string(), None);
    // The CLI is following before the effects run: it can only end once they have receipts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = submit(&gw, &effects[0], &proofs).await;
    let second = submit(&gw, &effects[1], &proofs).await;
    let (ok, stdout, stderr) = ended(child).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("ran {}", inv.cid())),
        "{stdout}"
    );
    // The effects' receipts, in the order stored, one level down.
    for (line, receipt) in lines[1..].iter().zip([&first, &second]) {
        assert!(line.starts_with("   fork /wasm/run ran "), "{stdout}");
        assert!(line.contains(&format!("receipt {receipt}")), "{stdout}");
    }
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_cli_may_follow_an_invocation_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = serve(dir.path(), &w, HttpArgs::default()).await;
    let adder = put_blob(&w, &gw, wasm(ADD_WAT)).await;
    let guest = requesting(vec![effect(adder, 1, b"a")]);
    let inv = invoke(&w, &gw, abi(Ipld::Bytes(guest)), b"1");
    let cid = inv.cid().to_string();

    // Without --wait, a CID with no receipt yet fails at once; a wait past the gateway's
    // longest is refused before anything is sent.
    let (ok, _, stderr) = ended(follow_cli(&gw, &cid, None)).await;
    assert!(!ok && stderr.contains("404"), "{stderr}");
    let (ok, _, stderr) = ended(follow_cli(&gw, &cid, Some("121"))).await;
    assert!(!ok && stderr.contains("121"), "{stderr}");

    // With it, the CLI waits, then draws the tree once the invocation is sent.
    let child = follow_cli(&gw, &cid, Some("60"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut proofs = w.chain.clone();
    proofs.push(to_gateway(&w, &gw));
    let (_, effects, delegations) = reply(&gw, container(&inv, &proofs)).await;
    proofs.extend(delegations.into_values());
    let forked = submit(&gw, &effects[0], &proofs).await;
    let (ok, stdout, stderr) = ended(child).await;
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("ran {}", inv.cid())),
        "{stdout}"
    );
    assert!(lines[1].contains(&format!("receipt {forked}")), "{stdout}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_page_on_another_origin_may_resume_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let gw = serve(dir.path(), &w, HttpArgs::default()).await;
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/receipts/bafkqaaa/events", gw.addr),
        )
        .header("origin", "http://page.example:5173")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("last-event-id"), "{allowed}");
    gw.stop().await.unwrap();
}
