//! The published argument schemas against the documented examples: every `ucan invoke … --args`
//! line of `docs/arguments.md` fits the schema its command has in `GET /`; the local ones run on a
//! real gateway and give the `out` the doc prints; the Bacalhau ones become jobs; and wrong shapes
//! are refused by the schema. The shipped `.wasm` guests are held to their `.wat` sources.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::exec::bacalhau::mapping::{self, Caps, Defaults, JobRequest};
use ucan_gateway::exec::schema::argument_schema;
use ucan_gateway::ipld::from_dag_json;
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;

/// The part of JSON Schema the published schemas use: `type`, `properties`, `required`,
/// `additionalProperties`, `propertyNames`, `items`, `oneOf`, `const`, `minLength`, `minimum` and
/// `pattern`. An unknown keyword fails the check, so a schema cannot quietly use more than this.
fn check(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Err(format!("{at}: schema is not an object"));
    };
    for (keyword, rule) in schema {
        match keyword.as_str() {
            "$schema" | "title" | "description" | "contentEncoding" => {}
            "type" => {
                let ok = match rule.as_str().unwrap() {
                    "object" => value.is_object(),
                    "array" => value.is_array(),
                    "string" => value.is_string(),
                    "number" => value.is_number(),
                    "integer" => value.is_i64() || value.is_u64(),
                    other => return Err(format!("{at}: type {other} unsupported")),
                };
                if !ok {
                    return Err(format!("{at}: not of type {rule}: {value}"));
                }
            }
            "required" => {
                for key in rule.as_array().unwrap() {
                    if value.get(key.as_str().unwrap()).is_none() {
                        return Err(format!("{at}: missing {key}"));
                    }
                }
            }
            "properties" => {
                for (key, sub) in rule.as_object().unwrap() {
                    if let Some(v) = value.get(key) {
                        check(sub, v, &format!("{at}.{key}"))?;
                    }
                }
            }
            "additionalProperties" => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (key, v) in value.as_object().into_iter().flatten() {
                    if known.is_some_and(|k| k.contains_key(key)) {
                        continue;
                    }
                    match rule {
                        Value::Bool(false) => return Err(format!("{at}: unexpected {key:?}")),
                        Value::Bool(true) => {}
                        sub => check(sub, v, &format!("{at}.{key}"))?,
                    }
                }
            }
            "propertyNames" => {
                for key in value.as_object().into_iter().flatten().map(|(k, _)| k) {
                    check(rule, &json!(key), &format!("{at} key {key:?}"))?;
                }
            }
            "items" => {
                for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                    check(rule, v, &format!("{at}[{i}]"))?;
                }
            }
            "oneOf" => {
                let fits = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| check(s, value, at).is_ok())
                    .count();
                if fits != 1 {
                    return Err(format!(
                        "{at}: fits {fits} of oneOf, not exactly 1: {value}"
                    ));
                }
            }
            "const" if value != rule => return Err(format!("{at}: not {rule}: {value}")),
            "const" => {}
            "minLength" => {
                if let Some(s) = value.as_str()
                    && (s.chars().count() as u64) < rule.as_u64().unwrap()
                {
                    return Err(format!("{at}: shorter than {rule}"));
                }
            }
            "minimum" => {
                if let Some(n) = value.as_f64()
                    && n < rule.as_f64().unwrap()
                {
                    return Err(format!("{at}: below {rule}"));
                }
            }
            "pattern" => {
                let re = regex::Regex::new(rule.as_str().unwrap()).unwrap();
                if let Some(s) = value.as_str()
                    && !re.is_match(s)
                {
                    return Err(format!("{at}: {s:?} does not match {rule}"));
                }
            }
            other => return Err(format!("{at}: keyword {other} unsupported by this check")),
        }
    }
    Ok(())
}

fn b64(path: &str) -> String {
    use base64::Engine;
    let bytes = std::fs::read(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// One documented example: the command, its arguments, and the `out` the doc prints, if any.
struct Example {
    command: String,
    args: Value,
    out: Option<Value>,
}

/// Every `ucan invoke $GW --cmd C --args '…'` line of `docs/arguments.md`, with the shell
/// variables the doc defines replaced by what they hold.
fn documented() -> Vec<Example> {
    let doc = include_str!("../../docs/arguments.md");
    let vars = [
        ("'$ADD'", b64("examples/guests/add.wasm")),
        ("'$WRAP'", b64("examples/guests/cbor_wrap.wasm")),
        ("'$ECHO'", b64("examples/guests/echo.wasm")),
    ];
    let lines: Vec<&str> = doc.lines().collect();
    let mut examples = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix("ucan invoke $GW --cmd ") else {
            continue;
        };
        let (command, rest) = rest.split_once(' ').unwrap();
        let quoted = rest.strip_prefix("--args '").expect(line);
        let mut text = quoted[..quoted.rfind('\'').expect(line)].to_owned();
        for (var, value) in &vars {
            text = text.replace(var, value);
        }
        let args: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let out = lines
            .get(i + 1)
            .and_then(|l| l.strip_prefix("# out: "))
            .map(|o| serde_json::from_str(o).unwrap_or_else(|e| panic!("{e}: {o}")));
        examples.push(Example {
            command: command.to_owned(),
            args,
            out,
        });
    }
    examples
}

const LOCAL_ROUTES: &str = r#"
[[route]]
command = "/wasi/run"
backend = "wasi"
effect = "pure"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn documented_examples_fit_their_schemas_and_run_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    let gw = super::gateway::gateway(dir.path(), &operator, LOCAL_ROUTES).await;
    let http = reqwest::Client::new();
    let described: Value = serde_json::from_slice(
        &http
            .get(format!("http://{}/", gw.addr))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let offered: BTreeMap<&str, &Value> = described["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["command"].as_str().unwrap(), &c["arguments"]))
        .collect();
    for command in ["/wasm/run", "/wasi/run", "/blob/put", "/ucan/revoke"] {
        assert!(offered[command].is_object(), "{command}: {described}");
    }

    let examples = documented();
    let mut ran = 0;
    let mut mapped = 0;
    for example in &examples {
        let command = example.command.as_str();
        let schema = match offered.get(command) {
            Some(schema) => (*schema).clone(),
            // Not offered here: a Bacalhau command, whose shape depends only on the command.
            None => argument_schema("bacalhau", command).unwrap_or_else(|| panic!("{command}")),
        };
        check(&schema, &example.args, command).unwrap_or_else(|e| panic!("{e}"));

        let ipld = from_dag_json(&example.args.to_string()).unwrap();
        let ipld_core::ipld::Ipld::Map(args) = ipld else {
            panic!("{command}: args are not a map")
        };
        if !offered.contains_key(command) {
            let meta = BTreeMap::new();
            let request = JobRequest {
                command,
                args: &args,
                meta: &meta,
                ipvm_memory: None,
                ipvm_timeout: None,
                name: "doc",
                labels: BTreeMap::new(),
            };
            let caps = Caps {
                cpu_milli: 1000,
                memory_bytes: 1 << 30,
                disk_bytes: 1 << 30,
                gpu: 0,
                timeout: std::time::Duration::from_secs(600),
            };
            mapping::job(&request, &caps, &Defaults::default())
                .unwrap_or_else(|e| panic!("{command}: the documented example is no job: {e}"));
            mapped += 1;
            continue;
        }
        let inv = InvocationBuilder::new(operator.did(), Command::parse(command).unwrap(), args)
            .audience(gw.did.clone())
            .expires(Some(unix_now() + 300))
            .sign(&operator)
            .unwrap();
        let container = Container {
            tokens: vec![inv.bytes().to_vec()],
        };
        let response = http
            .post(format!("http://{}/", gw.addr))
            .header("accept", "application/json")
            .body(container.encode(Format::Raw))
            .send()
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let out = &answer["receipt"]["out"];
        if let Some(expected) = &example.out {
            assert_eq!(out, expected, "{command} {}", example.args);
        } else {
            assert!(out.get("ok").is_some(), "{command}: {answer}");
        }
        ran += 1;
    }
    assert_eq!((ran, mapped), (5, 3), "examples found in docs/arguments.md");
    gw.stop().await.unwrap();
}

#[test]
fn wrong_shapes_are_refused_by_the_schemas() {
    let module = json!({"/": {"bytes": "AGFzbQEAAAA"}});
    let cases = [
        ("wasm", "/wasm/run", json!({"func": "add"})),
        ("wasm", "/wasm/run", json!({"module": module, "func": 7})),
        ("wasm", "/wasm/run", json!({"module": 5, "func": "add"})),
        (
            "wasm",
            "/wasm/run",
            json!({"module": module, "func": "add", "args": ["2"]}),
        ),
        ("wasi", "/wasi/run", json!({"module": module, "args": [1]})),
        (
            "wasi",
            "/wasi/run",
            json!({"module": module, "env": {"A": 1}}),
        ),
        (
            "wasi",
            "/wasm32-wasi/run",
            json!({"module": module, "mounts": {}}),
        ),
        (
            "wasi",
            "/wasm32-wasi/run",
            json!({"module": module, "entrypoint": "main"}),
        ),
        ("blob", "/blob/put", json!({"bytes": "not bytes"})),
        ("blob", "/blob/put", json!({})),
        ("bacalhau", "/docker/run", json!({"image": ""})),
        (
            "bacalhau",
            "/docker/run",
            json!({"image": "a", "workdir": "rel"}),
        ),
        ("bacalhau", "/docker/run", json!({"image": "a", "extra": 1})),
        (
            "bacalhau",
            "/docker/run",
            json!({"image": "a", "mounts": {"/in": "ftp://x"}}),
        ),
        (
            "bacalhau",
            "/docker/run",
            json!({"image": "a", "resources": {"cpu": -1}}),
        ),
        ("bacalhau", "/wasm32-wasi/run", json!({"module": 3})),
        (
            "bacalhau",
            "/bacalhau/job/run",
            json!({"job": {"Type": "daemon"}}),
        ),
        (
            "bacalhau",
            "/bacalhau/job/run",
            json!({"job": {"Type": "batch", "Count": 3}}),
        ),
    ];
    for (backend, command, args) in cases {
        let schema = argument_schema(backend, command).unwrap();
        assert!(
            check(&schema, &args, command).is_err(),
            "{backend} {command} accepted {args}"
        );
    }
    assert!(argument_schema("bacalhau", "/no/such").is_none());
    let revoke = ucan_gateway::exec::schema::revoke_schema();
    assert!(check(&revoke, &json!({"revoke": {"/": "bafy"}}), "revoke").is_ok());
    assert!(check(&revoke, &json!({"revoke": "bafy"}), "revoke").is_err());
}

#[test]
fn shipped_guests_are_their_wat_sources_compiled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/guests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wat") {
            let shipped = std::fs::read(path.with_extension("wasm")).unwrap_or_else(|_| {
                panic!(
                    "{} has no .wasm: run cargo run --example wat2wasm -- examples/guests/*.wat",
                    path.display()
                )
            });
            assert_eq!(
                wat::parse_file(&path).unwrap(),
                shipped,
                "{} is stale: run cargo run --example wat2wasm -- examples/guests/*.wat",
                path.display()
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 3);
}
