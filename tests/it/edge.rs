//! The HTTP edge over real HTTP on loopback: CORS for browser apps, request ids, the JSON shape of
//! every refusal the edge itself makes, probes, metrics names, and the concurrency caps.

use std::time::Duration;

use ucan_gateway::cli::serve::{HttpArgs, Running};
use ucan_gateway::did::{KeyAlg, SigningKey};

use crate::gateway::{serve_policy_with, write_policy};
use crate::support::fake_bacalhau::FakeBacalhau;

/// A gateway for `operator` with these edge flags.
pub(crate) async fn edge_gateway(dir: &std::path::Path, http: HttpArgs) -> (Running, SigningKey) {
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let policy = write_policy(dir, &operator, "", "");
    (serve_policy_with(dir, policy, http).await, operator)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Status and `error.name` of a JSON refusal; panics on any other shape.
pub(crate) async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type").to_owned();
    let body = response.bytes().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        panic!(
            "{status} {content_type}: not JSON: {}",
            String::from_utf8_lossy(&body)
        )
    });
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(json["error"]["message"].is_string(), "{json}");
    (status, json["error"]["name"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn browsers_may_call_from_any_origin_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = edge_gateway(dir.path(), HttpArgs::default()).await;
    let client = reqwest::Client::new();

    // What @ucanto/client's fetch sends first: a preflight for a CAR body.
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("http://{}/", gw.addr))
        .header("origin", "http://page.example:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization,prefer,x-request-id",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(header(&preflight, "access-control-allow-origin"), "*");
    assert!(header(&preflight, "access-control-allow-methods").contains("POST"));
    let allowed = header(&preflight, "access-control-allow-headers").to_ascii_lowercase();
    for name in ["content-type", "authorization", "prefer", "x-request-id"] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert!(!header(&preflight, "access-control-max-age").is_empty());

    // The actual request: a refusal a page must be able to read, with the gateway's headers.
    let actual = client
        .post(format!("http://{}/", gw.addr))
        .header("origin", "http://page.example:5173")
        .header("content-type", "application/vnd.ipld.car")
        .body("not a car")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&actual, "access-control-allow-origin"), "*");
    let exposed = header(&actual, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["ucan-gateway-refused", "retry-after", "x-request-id"] {
        assert!(exposed.contains(name), "{name} not in {exposed}");
    }
    assert_eq!(refusal(actual).await, (400, "MalformedMessage".to_owned()));

    // A receipt read from another origin.
    let read = client
        .get(format!("http://{}/receipts/bafkqaaa", gw.addr))
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&read, "access-control-allow-origin"), "*");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_operator_chooses_the_origins() {
    let dir = tempfile::tempdir().unwrap();
    let http = HttpArgs {
        cors_origins: vec!["https://app.example".into(), "http://localhost:5173".into()],
        ..HttpArgs::default()
    };
    let (gw, _) = edge_gateway(dir.path(), http).await;
    let get = async |origin: &str| {
        reqwest::Client::new()
            .get(format!("http://{}/", gw.addr))
            .header("origin", origin)
            .send()
            .await
            .unwrap()
    };
    let allowed = get("https://app.example").await;
    assert_eq!(
        header(&allowed, "access-control-allow-origin"),
        "https://app.example"
    );
    assert!(
        header(&allowed, "vary")
            .to_ascii_lowercase()
            .contains("origin")
    );
    let other = get("https://evil.example").await;
    assert_eq!(header(&other, "access-control-allow-origin"), "");
    gw.stop().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let http = HttpArgs {
        cors_origins: vec!["none".into()],
        ..HttpArgs::default()
    };
    let (gw, _) = edge_gateway(dir.path(), http).await;
    let none = reqwest::Client::new()
        .get(format!("http://{}/", gw.addr))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&none, "access-control-allow-origin"), "");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = edge_gateway(dir.path(), HttpArgs::default()).await;
    let get = async |id: Option<&str>| {
        let mut request = reqwest::Client::new().get(format!("http://{}/livez", gw.addr));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        header(&response, "x-request-id").to_owned()
    };
    assert_eq!(get(Some("trace-42")).await, "trace-42");
    let replaced = get(Some(&"x".repeat(200))).await;
    assert_eq!(replaced.len(), 32);
    let generated = get(None).await;
    assert_eq!(generated.len(), 32);
    assert_ne!(generated, get(None).await);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn every_edge_refusal_has_the_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = edge_gateway(dir.path(), HttpArgs::default()).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", gw.addr);
    let cid = "bafkqaaa";

    for (path, status, name) in [
        ("/no/such/path", 404, "NotFound"),
        (
            &format!("/receipts/{cid}?follow=join&wait=-1"),
            400,
            "InvalidQuery",
        ),
        (
            &format!("/receipts/{cid}?follow=join&wait=abc"),
            400,
            "InvalidQuery",
        ),
        (
            &format!("/receipts/{cid}?follow=join&wait=99999999999999999999999"),
            400,
            "InvalidQuery",
        ),
        (
            &format!("/receipts/{cid}?follow=join&wait=121"),
            400,
            "InvalidQuery",
        ),
        (&format!("/receipts/{cid}?follow=fork"), 400, "InvalidQuery"),
        (&format!("/receipts/{cid}?wait=abc"), 400, "InvalidQuery"),
        ("/receipts/not-a-cid", 400, "MalformedCid"),
        ("/receipts/%FF%FE", 400, "MalformedCid"),
        (&format!("/receipts/{cid}"), 404, "NotFound"),
    ] {
        let response = client.get(url(path)).send().await.unwrap();
        assert_eq!(
            refusal(response).await,
            (status, name.to_owned()),
            "GET {path}"
        );
    }

    let wrong = client.put(url("/")).send().await.unwrap();
    assert!(
        header(&wrong, "allow").contains("POST"),
        "{:?}",
        wrong.headers()
    );
    assert_eq!(refusal(wrong).await, (405, "MethodNotAllowed".to_owned()));
    let wrong = client.delete(url("/metrics")).send().await.unwrap();
    assert_eq!(refusal(wrong).await, (405, "MethodNotAllowed".to_owned()));
    let unsupported = client
        .post(url("/"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refusal(unsupported).await,
        (415, "UnsupportedMediaType".to_owned())
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_follow_the_naming_guide_and_callers_add_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = edge_gateway(dir.path(), HttpArgs::default()).await;
    let client = reqwest::Client::new();
    for i in 0..50 {
        let _ = client
            .get(format!("http://{}/unknown/{i}", gw.addr))
            .send()
            .await
            .unwrap();
        let _ = client
            .get(format!("http://{}/receipts/bafkqaaa{i}", gw.addr))
            .send()
            .await
            .unwrap();
    }
    let response = client
        .get(format!("http://{}/metrics", gw.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(
            "ucan_gateway_build_info{{version=\"{version}\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains(
        r#"ucan_gateway_http_requests_total{method="GET",route="unmatched",status="404"} 50"#
    ));
    assert!(text.contains(r#"route="/receipts/{cid}""#));
    // Only the scrape itself is in flight.
    assert!(
        text.contains("ucan_gateway_http_requests_in_flight 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE ucan_gateway_http_request_duration_seconds histogram"));
    #[cfg(target_os = "linux")]
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(text.contains(name), "{name} missing");
    }
    // No raw path became a label value.
    assert!(!text.contains("/unknown/"), "{text}");
    assert!(!text.contains("bafkqaaa1"), "{text}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn probes_report_the_store_and_each_compute_network() {
    let fake = FakeBacalhau::start(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let extra = format!(
        "[[bacalhau]]\nname = \"lab\"\nurl = \"{}\"\n[[bacalhau]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9\"\n",
        fake.url()
    );
    let policy = write_policy(dir.path(), &operator, "", &extra);
    let gw = serve_policy_with(dir.path(), policy, HttpArgs::default()).await;
    let get = async |path: &str| {
        let response = reqwest::get(format!("http://{}{path}", gw.addr))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        )
    };
    assert_eq!(
        get("/livez").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    for path in ["/readyz", "/health"] {
        let (status, body) = get(path).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["checks"]["store"], "ok");
        assert_eq!(body["checks"]["bacalhau:lab"], "ok");
        assert_eq!(body["checks"]["bacalhau:gone"], "unavailable");
    }
    gw.stop().await.unwrap();

    // Every network up: ready.
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[[bacalhau]]\nname = \"lab\"\nurl = \"{}\"\n", fake.url());
    let policy = write_policy(dir.path(), &operator, "", &extra);
    let gw = serve_policy_with(dir.path(), policy, HttpArgs::default()).await;
    let response = reqwest::get(format!("http://{}/readyz", gw.addr))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_served_openapi_document_carries_the_crate_version() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, _) = edge_gateway(dir.path(), HttpArgs::default()).await;
    let body = reqwest::get(format!("http://{}/openapi.json", gw.addr))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    gw.stop().await.unwrap();
}
