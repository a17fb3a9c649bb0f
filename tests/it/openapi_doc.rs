//! `docs/openapi.json` held to the router: every served path and method is documented and every
//! documented one served (probed over HTTP, so the router's own list cannot lie), and each
//! operation sent its documented parameters, their edge values and a value just outside them,
//! answers a documented status with the documented error shape.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use ucan_gateway::cli::serve::HttpArgs;

use crate::connections::add_container;
use crate::edge::edge_gateway;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn document() -> Value {
    serde_json::from_str(ucan_gateway::server::OPENAPI).expect("docs/openapi.json is JSON")
}

/// Follows a local `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r}")),
        None => value,
    }
}

fn documented(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(|k| k.to_ascii_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[test]
fn every_route_is_documented_and_every_documented_path_routed() {
    let doc = document();
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let served: BTreeMap<String, BTreeSet<String>> = ucan_gateway::server::served()
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.iter().map(|m| (*m).to_owned()).collect()))
        .collect();
    assert_eq!(served, documented(&doc));
}

/// Sends one request; status and parsed body.
async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
) -> (u16, String, Value) {
    let mut request = client.request(method.parse().unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, content_type, json)
}

/// The status must be one the operation documents, and a documented error must have the shape.
fn check(doc: &Value, op: &Value, what: &str, (status, content_type, json): &(u16, String, Value)) {
    let response = op["responses"]
        .get(status.to_string())
        .unwrap_or_else(|| panic!("{what}: {status} is not documented ({json})"));
    let response = resolve(doc, response);
    let error_schema = "#/components/schemas/Error";
    let errors = response["content"]["application/json"]["schema"]["$ref"] == error_schema;
    if errors {
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type}"
        );
        assert!(json["error"]["name"].is_string(), "{what}: {json}");
        assert!(json["error"]["message"].is_string(), "{what}: {json}");
    }
}

#[tokio::test]
async fn the_server_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, operator) = edge_gateway(dir.path(), HttpArgs::default()).await;
    // A stored receipt, so long polls on it answer at once.
    let stored = crate::gateway::receipt(&gw, add_container(&gw, &operator)).await;
    let cid = stored.body.ran.to_string();
    let doc = document();
    let client = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);

    for (path, methods) in documented(&doc) {
        let concrete = path.replace("{cid}", &cid);
        // Served methods are not refused as unknown; the others are 405 with the error shape.
        for method in METHODS.map(str::to_ascii_uppercase) {
            let (status, _, json) = send(&client, &method, &format!("{base}{concrete}"), &[]).await;
            if methods.contains(&method) {
                assert_ne!(status, 405, "{method} {path}");
                let fallback = json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no such path"));
                assert!(!fallback, "{method} {path} is documented but not routed");
            } else {
                assert_eq!(
                    (status, json["error"]["name"].as_str()),
                    (405, Some("MethodNotAllowed")),
                    "{method} {path}"
                );
            }
        }

        for method in methods {
            let op = &doc["paths"][&path][method.to_ascii_lowercase()];
            let what = format!("{method} {path}");
            let url = format!("{base}{concrete}");
            check(&doc, op, &what, &send(&client, &method, &url, &[]).await);
            for param in op["parameters"].as_array().into_iter().flatten() {
                let param = resolve(&doc, param);
                let name = param["name"].as_str().unwrap();
                let schema = &param["schema"];
                match param["in"].as_str().unwrap() {
                    "query" => {
                        let mut good: Vec<String> = Vec::new();
                        let mut bad: Vec<String> = vec!["abc".into(), "".into()];
                        if let Some(values) = schema["enum"].as_array() {
                            good.extend(values.iter().map(|v| v.as_str().unwrap().to_owned()));
                            bad = vec!["not-in-the-enum".into()];
                        }
                        if schema["type"] == "integer" {
                            let (min, max) = (
                                schema["minimum"].as_i64().unwrap(),
                                schema["maximum"].as_i64().unwrap(),
                            );
                            good.extend([min.to_string(), max.to_string()]);
                            bad.extend([
                                (min - 1).to_string(),
                                (max + 1).to_string(),
                                "1.5".into(),
                                "99999999999999999999999".into(),
                            ]);
                        }
                        // Integer parameters here only count with follow=join (a long poll).
                        let with = if name == "wait" { "follow=join&" } else { "" };
                        for value in &good {
                            let url = format!("{url}?{with}{name}={value}");
                            let answer = send(&client, &method, &url, &[]).await;
                            assert_ne!(answer.2["error"]["name"], "InvalidQuery", "{what} {url}");
                            check(&doc, op, &what, &answer);
                        }
                        for value in &bad {
                            let url = format!("{url}?{with}{name}={value}");
                            let answer = send(&client, &method, &url, &[]).await;
                            assert_eq!(answer.0, 400, "{what} {url}");
                            assert_eq!(answer.2["error"]["name"], "InvalidQuery", "{what} {url}");
                            check(&doc, op, &what, &answer);
                        }
                    }
                    "header" => {
                        let value = match name {
                            "Authorization" => "Bearer bm90IGEgY29udGFpbmVy".to_owned(),
                            "Accept" => "application/json".to_owned(),
                            "Prefer" => "wait=0".to_owned(),
                            "x-request-id" => "doc-check".to_owned(),
                            "Last-Event-ID" => cid.clone(),
                            other => panic!("no example for header {other}"),
                        };
                        let answer = send(&client, &method, &url, &[(name, value)]).await;
                        check(&doc, op, &format!("{what} with {name}"), &answer);
                    }
                    _ => {}
                }
            }
            // Every documented request media type is read (never 415).
            let media = op["requestBody"]["content"].as_object();
            for content_type in media.into_iter().flatten().map(|(k, _)| k) {
                let answer = send(
                    &client,
                    &method,
                    &url,
                    &[("content-type", content_type.clone())],
                )
                .await;
                assert_ne!(answer.0, 415, "{what} as {content_type}");
                check(&doc, op, &format!("{what} as {content_type}"), &answer);
            }
        }
    }
    gw.stop().await.unwrap();
}
