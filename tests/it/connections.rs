//! Connections and shutdown over raw TCP: half-sent requests, idle and silent connections, HTTP/2
//! prior knowledge and stalled bodies are closed in time; a slow upload that keeps sending is not;
//! shutdown drains within its deadline, ending long polls early and failing readiness meanwhile.
//! The bounds are generous multiples of the configured timeouts, never speed targets.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ucan_gateway::cli::serve::{HttpArgs, Running};
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;

use crate::edge::{edge_gateway, refusal};
use crate::gateway::{ADD_WAT, args, container, wasm};

const SEC: Duration = Duration::from_secs(1);

/// A gateway with the edge flags `f` sets; the directory lives as long as it is held.
async fn gateway(
    f: impl FnOnce(&mut HttpArgs),
) -> (tempfile::TempDir, Running, ucan_gateway::did::SigningKey) {
    let mut http = HttpArgs::default();
    f(&mut http);
    let dir = tempfile::tempdir().unwrap();
    let (gw, operator) = edge_gateway(dir.path(), http).await;
    (dir, gw, operator)
}

/// A connection that sent the head of a `POST /` of `body` and its first `sent` bytes.
async fn upload(gw: &Running, body: &[u8], sent: usize) -> TcpStream {
    let mut conn = connect(gw).await;
    conn.write_all(post_head(gw, body.len()).as_bytes())
        .await
        .unwrap();
    conn.write_all(&body[..sent]).await.unwrap();
    conn
}

/// Reads until the server closes the connection; the time it took and what was read. Panics past
/// `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + limit),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => panic!(
                "still open after {limit:?}; read {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (started.elapsed(), String::from_utf8_lossy(&seen).into());
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn connect(gw: &Running) -> TcpStream {
    TcpStream::connect(gw.addr).await.unwrap()
}

/// A container holding one `/wasm/run` add invocation by the operator.
pub(crate) fn add_container(gw: &Running, operator: &ucan_gateway::did::SigningKey) -> Vec<u8> {
    use ipld_core::ipld::Ipld;
    let inv = InvocationBuilder::new(
        operator.did(),
        Command::parse("/wasm/run").unwrap(),
        args(vec![
            ("module", Ipld::Bytes(wasm(ADD_WAT))),
            ("func", Ipld::String("add".into())),
            ("args", Ipld::List(vec![Ipld::Integer(2), Ipld::Integer(3)])),
        ]),
    )
    .audience(gw.did.clone())
    .expires(Some(unix_now() + 300))
    .sign(operator)
    .unwrap();
    container(&inv, &[])
}

fn post_head(gw: &Running, len: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n",
        gw.addr
    )
}

#[tokio::test]
async fn half_sent_silent_and_h2_connections_are_closed_in_time() {
    let (_dir, gw, _) = gateway(|h| {
        h.header_read_timeout = SEC;
        h.idle_timeout = 30 * SEC;
    })
    .await;

    // Half a request, then nothing: closed about a second after its first byte.
    let mut half = connect(&gw).await;
    half.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (took, _) = closed_within(&mut half, 5 * SEC).await;
    assert!(took >= SEC / 2, "closed too early: {took:?}");

    // Headers trickling in byte by byte do not reset the timer.
    let mut trickle = connect(&gw).await;
    let started = Instant::now();
    let closed = async {
        for b in b"GET /livez HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    closed.await;
    assert!(started.elapsed() < 5 * SEC + SEC, "{:?}", started.elapsed());
    let (_, read) = closed_within(&mut trickle, 5 * SEC).await;
    assert!(!read.contains("200 OK"), "{read}");

    // A connection that never sends a byte.
    let mut silent = connect(&gw).await;
    closed_within(&mut silent, 5 * SEC).await;

    // HTTP/2 prior knowledge is not served: the preface is refused at once.
    let mut h2 = connect(&gw).await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let (took, _) = closed_within(&mut h2, 5 * SEC).await;
    assert!(took < SEC, "h2 preface held the connection for {took:?}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn idle_kept_alive_connections_are_closed_after_the_idle_timeout() {
    let (_dir, gw, _) = gateway(|h| {
        h.header_read_timeout = 10 * SEC;
        h.idle_timeout = SEC;
    })
    .await;
    let mut conn = connect(&gw).await;
    conn.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (took, read) = closed_within(&mut conn, 6 * SEC).await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    assert!(took >= SEC / 2, "closed before the idle timeout: {took:?}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_upload_that_keeps_sending_completes_and_a_stalled_one_is_cut() {
    let (_dir, gw, operator) = gateway(|h| {
        h.header_read_timeout = SEC;
        h.body_read_timeout = SEC;
    })
    .await;

    // About three seconds of upload, never more than 300 ms without a byte.
    let body = add_container(&gw, &operator);
    let mut conn = upload(&gw, &body, 0).await;
    let chunk = body.len().div_ceil(10);
    for part in body.chunks(chunk) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.write_all(part).await.unwrap();
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "the slow upload was answered");

    // Half a body, then silence: refused and closed.
    let mut stalled = upload(&gw, &body, body.len() / 2).await;
    let (took, read) = closed_within(&mut stalled, 6 * SEC).await;
    assert!(read.starts_with("HTTP/1.1 400"), "{read}");
    assert!(read.contains("BodyTimeout"), "{read}");
    assert!(took >= SEC / 2, "{took:?}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn stop_with_a_hung_half_request_returns_within_the_drain_deadline() {
    let (_dir, gw, _) = gateway(|h| {
        h.header_read_timeout = 120 * SEC;
        h.drain_timeout = 2 * SEC;
    })
    .await;
    let mut half = connect(&gw).await;
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    tokio::time::timeout(5 * SEC, gw.stop())
        .await
        .expect("stop returned")
        .unwrap();
    assert!(started.elapsed() <= 3 * SEC, "{:?}", started.elapsed());
    closed_within(&mut half, SEC).await;
}

#[tokio::test]
async fn draining_fails_readiness_refuses_new_work_and_ends_at_the_deadline() {
    let (_dir, gw, operator) = gateway(|h| {
        h.body_read_timeout = 10 * SEC;
        h.drain_timeout = 3 * SEC;
    })
    .await;
    let addr = gw.addr;
    // A request in flight whose body never completes holds the drain open until the deadline.
    let body = add_container(&gw, &operator);
    let mut upload = upload(&gw, &body, 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let stopping = tokio::spawn(gw.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let get = async |path: &str| reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let ready = get("/readyz").await;
    assert_eq!(ready.status().as_u16(), 503);
    let ready: serde_json::Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    assert_eq!(ready["status"], "draining");
    assert_eq!(get("/livez").await.status().as_u16(), 200);
    let refused = get("/").await;
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_eq!(refusal(refused).await, (503, "Draining".to_owned()));

    tokio::time::timeout(10 * SEC, stopping)
        .await
        .expect("stop returned")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= 2 * SEC && took <= 5 * SEC,
        "drain took {took:?}, deadline 3 s"
    );
    closed_within(&mut upload, SEC).await;
}

#[tokio::test]
async fn a_long_poll_ends_early_when_draining() {
    let (_dir, gw, _) = gateway(|_| {}).await;
    let url = format!("http://{}/receipts/bafkqaaa?follow=join&wait=60", gw.addr);
    let poll = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    tokio::time::timeout(5 * SEC, gw.stop())
        .await
        .expect("stop returned")
        .unwrap();
    let response = tokio::time::timeout(SEC, poll)
        .await
        .expect("the long poll answered")
        .unwrap();
    // Its current answer: there is no receipt.
    assert_eq!(refusal(response).await, (404, "NotFound".to_owned()));
    assert!(started.elapsed() < 3 * SEC, "{:?}", started.elapsed());
}

#[tokio::test]
async fn caps_refuse_with_503_and_retry_after_instead_of_queueing() {
    let (_dir, gw, operator) = gateway(|h| {
        h.max_in_flight = 1;
        h.max_long_polls = 1;
    })
    .await;
    // One request in flight (its body still arriving) takes the only slot.
    let body = add_container(&gw, &operator);
    let mut upload = upload(&gw, &body, 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let client = reqwest::Client::new();
    let busy = client
        .get(format!("http://{}/", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        busy.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_eq!(refusal(busy).await, (503, "Overloaded".to_owned()));
    // Probes are not counted.
    let live = client
        .get(format!("http://{}/livez", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status().as_u16(), 200);

    // One long poll waiting takes the only long-poll slot; long polls are not in the other cap.
    let url = format!("http://{}/receipts/bafkqaaa?follow=join&wait=3", gw.addr);
    let first = tokio::spawn(reqwest::get(url.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = client.get(&url).send().await.unwrap();
    assert_eq!(refusal(second).await, (503, "TooManyLongPolls".to_owned()));

    // The slot is free again once the upload completes.
    upload.write_all(&body[10..]).await.unwrap();
    let mut head = [0u8; 12];
    upload.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(upload);
    let after = client
        .get(format!("http://{}/", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 200);
    assert_eq!(first.await.unwrap().unwrap().status().as_u16(), 404);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn an_ordinary_request_past_the_request_timeout_gets_504() {
    let (_dir, gw, operator) = gateway(|h| {
        h.request_timeout = SEC;
        h.body_read_timeout = 30 * SEC;
    })
    .await;
    // The body arrives within the no-progress timeout each time, but the whole takes 2 s.
    let body = add_container(&gw, &operator);
    let mut conn = upload(&gw, &body, 0).await;
    let started = Instant::now();
    for part in body.chunks(body.len().div_ceil(8)) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if conn.write_all(part).await.is_err() {
            break;
        }
    }
    let (_, read) = closed_within(&mut conn, 5 * SEC).await;
    assert!(read.starts_with("HTTP/1.1 504"), "{read}");
    assert!(read.contains("RequestTimeout"), "{read}");
    assert!(started.elapsed() < 4 * SEC);
    gw.stop().await.unwrap();
}

/// The real binary: JSON log lines carry the request id of their request, and SIGTERM with a
/// half-sent request open exits within the drain deadline.
#[cfg(unix)]
#[tokio::test]
async fn the_binary_logs_request_ids_as_json_and_exits_on_sigterm_within_the_deadline() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--drain-timeout", "2", "--header-read-timeout", "120"])
        // One async worker: the gateway must not need a second to make progress.
        .args(["--worker-threads", "1"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<serde_json::Value>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let json = serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("a log line that is not JSON: {line}"));
            if lines_tx.send(json).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(10 * SEC)
            .unwrap_or_else(|_| panic!("no log line: {what}"))
    };
    let addr = loop {
        let line = next("serving");
        if line["message"] == "ucan-gateway serving" {
            break line["addr"].as_str().unwrap().to_owned();
        }
    };

    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{addr}/"))
        .header("x-request-id", "req-from-test")
        .body("not a container")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(response.headers()["x-request-id"], "req-from-test");
    let mut seen = Vec::new();
    let access = loop {
        let line = next("access line");
        if line["message"] == "request" {
            break line;
        }
        seen.push(line);
    };
    assert_eq!(access["span"]["request_id"], "req-from-test", "{access}");
    assert_eq!(access["status"], 400);
    assert_eq!(access["route"], "/");
    let invocation = seen
        .iter()
        .find(|l| l["message"] == "invocation")
        .unwrap_or_else(|| panic!("no invocation line in {seen:?}"));
    assert_eq!(invocation["span"]["request_id"], "req-from-test");

    // A half-sent request, then SIGTERM.
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < 10 * SEC,
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < 3 * SEC, "{:?}", started.elapsed());
}
