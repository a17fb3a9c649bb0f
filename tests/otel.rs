//! With the `otel` feature, the real binary exports request spans over OTLP/HTTP to the endpoint
//! in `OTEL_EXPORTER_OTLP_ENDPOINT`, continuing the caller's W3C trace. Only built with
//! `cargo test --features otel --test otel` (`.ci/run` does). A test target of its own, so that
//! building it with the feature does not rebuild the whole integration suite.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;

// Multi-threaded: the collector must answer while the test waits for the gateway to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_are_exported_and_continue_the_callers_trace() {
    // A collector that keeps every body posted to /v1/traces.
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let keep = Arc::clone(&received);
    let collector = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| async move {
            keep.lock().unwrap().push(body);
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, collector).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ucan-gateway"))
        .args(["serve", "--listen", &addr, "--drain-timeout", "1"])
        .arg("--data-dir")
        .arg(dir.path())
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    loop {
        let sent = client
            .get(format!("http://{addr}/livez"))
            .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no gateway");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    while child.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let bodies = received.lock().unwrap().concat();
    let contains = |needle: &[u8]| bodies.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"GET /livez"), "no span named GET /livez exported");
    let raw_trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        contains(&raw_trace_id),
        "the caller's trace id was not kept"
    );
    assert!(contains(b"ucan-gateway"), "no service name");
}
