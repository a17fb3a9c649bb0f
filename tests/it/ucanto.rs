//! ucanto clients against a real gateway on loopback: the unmodified `@ucanto/client` (driven by
//! `tests/ucanto/interop.mjs`) and the transport's status codes. The npm packages are installed with
//! `npm ci` when missing; without node the interop test is skipped, or fails where CI requires node
//! (`support::node`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command as Process;

use ipld_core::ipld::Ipld;
use ucan_gateway::cli::serve::Running;
use ucan_gateway::did::SigningKey;
use ucan_gateway::receipt::{META_MEMOIZED, Out, Receipt};
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::container::{Container, Format};
use ucan_gateway::ucan::invocation::{InvocationBuilder, task_id};
use ucan_gateway::ucan::validate::unix_now;

const ADD_WAT: &str = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#;
const CAR: &str = "application/vnd.ipld.car";

pub(crate) fn operator_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    getrandom(&mut seed);
    seed
}

fn getrandom(buf: &mut [u8]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(buf);
}

async fn gateway(dir: &Path, operator: &SigningKey) -> Running {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
subjects = ["{}"]
max_body = "1MiB"
[limits]
fuel = 10_000_000
memory = "16MiB"
timeout = "2s"
[[route]]
command = "/wasm/run"
backend = "wasm"
effect = "pure"
"#,
            operator.did()
        ),
    )
    .unwrap();
    super::gateway::serve_policy(dir, policy).await
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `interop.mjs` against `gw` and gives its lines by case name.
fn run_interop(
    dir: &Path,
    gw: &Running,
    seed: &[u8; 32],
    module: &[u8],
) -> HashMap<String, serde_json::Value> {
    let output = Process::new("node")
        .arg("interop.mjs")
        .current_dir(dir)
        .env("GATEWAY_URL", format!("http://{}/", gw.addr))
        .env("GATEWAY_DID", &gw.did)
        .env("OPERATOR_SEED", hex(seed))
        .env("WASM_HEX", hex(module))
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "interop.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            (v["case"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

fn error_name(line: &serde_json::Value) -> &str {
    line["error"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error receipt: {line}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmodified_ucanto_client_gets_receipts_and_refusals() {
    let Some(node_dir) =
        crate::support::node::interop_dir("an_unmodified_ucanto_client_gets_receipts_and_refusals")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let seed = operator_seed();
    let operator = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed));
    let gw = gateway(dir.path(), &operator).await;
    let module = wat::parse_str(ADD_WAT).unwrap();

    // Work the P-256 case below asks for again, done first through UCAN 1.0.
    let earlier = native_add(&gw, &operator, &module, 5, 6).await;
    assert_eq!(earlier.body.out, Out::Ok(Ipld::Integer(11)));

    let gw_ref = &gw;
    let lines = tokio::task::block_in_place(|| run_interop(&node_dir, gw_ref, &seed, &module));

    // The transport refuses as the reference server does: 415, 406, 400.
    for (name, status) in [
        ("unsupported", 415),
        ("unacceptable", 406),
        ("malformed", 400),
    ] {
        let line = &lines[&format!("status/{name}")];
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["reference"], status, "{line}");
    }

    // Every answer is a receipt for the invocation sent, signed by the gateway, as the client sees it.
    for (name, line) in lines
        .iter()
        .filter(|(name, _)| !name.starts_with("status/"))
    {
        assert_eq!(line["verified"], true, "{name}: {line}");
        assert_eq!(line["verified_by_other"], false, "{name}: {line}");
        assert_eq!(line["ran"], line["invocation"], "{name}: {line}");
        assert_eq!(line["issuer"], gw.did.as_str(), "{name}: {line}");
    }
    let ok = &lines["ok"];
    assert_eq!(ok["ok"], 42, "{ok}");
    assert_eq!(lines["p256"]["ok"], 11, "{}", lines["p256"]);
    assert_eq!(lines["first"]["ok"], 7, "{}", lines["first"]);

    let outside = &lines["outside"];
    assert_eq!(error_name(outside), "Unauthorized");
    assert!(
        outside["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Constraint violation"),
        "{outside}"
    );
    let expired = &lines["expired"];
    assert_eq!(error_name(expired), "Unauthorized");
    assert!(
        expired["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has expired"),
        "{expired}"
    );
    assert_eq!(error_name(&lines["audience"]), "InvalidAudience");
    for late in ["late", "unproven"] {
        assert_eq!(error_name(&lines[late]), "Unauthorized", "{}", lines[late]);
    }
    assert!(
        lines["late"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has expired"),
        "{}",
        lines["late"]
    );

    // The reference @ucanto/server answers every shared case alike: same outcome, same error name.
    for case in [
        "ok",
        "outside",
        "expired",
        "audience",
        "late",
        "unproven",
        "trusted",
        "untrusted",
    ] {
        let line = &lines[case];
        let reference = &line["reference"];
        assert_eq!(line["ok"], reference["ok"], "{case}: {line}");
        assert_eq!(
            line["error"]["name"], reference["error"]["name"],
            "{case}: {line}"
        );
    }
    assert_eq!(error_name(&lines["replay"]), "Replayed");
    assert!(
        lines["revoke"]["ok"]["revoked"]["/"]
            .as_str()
            .is_some_and(|c| c.starts_with("bafy")),
        "{}",
        lines["revoke"]
    );
    let revoked = &lines["revoked"];
    assert_eq!(error_name(revoked), "Unauthorized");
    assert!(
        revoked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has been revoked"),
        "{revoked}"
    );

    // A URI resource granted by the operator (an honoured subject): ok, once; granted by anyone
    // else: refused, as the reference server with the same `canIssue` hook refuses it.
    assert_eq!(lines["trusted"]["ok"], 42, "{}", lines["trusted"]);
    assert_eq!(error_name(&lines["trusted-replay"]), "Replayed");
    let untrusted = &lines["untrusted"];
    assert_eq!(error_name(untrusted), "Unauthorized");
    assert!(
        untrusted["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not a DID"),
        "{untrusted}"
    );
    // The run rests on the operator's authority: its task's subject is the operator, not the URI.
    let trusted = stored_receipt(&gw, lines["trusted"]["invocation"].as_str().unwrap()).await;
    let args = BTreeMap::from([
        ("module".to_owned(), Ipld::Bytes(module.clone())),
        ("func".to_owned(), Ipld::String("add".into())),
        (
            "args".to_owned(),
            Ipld::List(vec![Ipld::Integer(40), Ipld::Integer(2)]),
        ),
    ]);
    let wasm_run = Command::parse("/wasm/run").unwrap();
    assert_eq!(
        trusted.body.task,
        task_id(&operator.did(), &wasm_run, &args, &[]),
        "sub = the trusted issuer"
    );

    // The canonical record is the UCAN 1.0 receipt, found by the ucanto invocation's CID.
    let stored = stored_receipt(&gw, ok["invocation"].as_str().unwrap()).await;
    assert_eq!(stored.body.out, Out::Ok(Ipld::Integer(42)));
    // Refusals are answered, not stored.
    let refused = reqwest::get(format!(
        "http://{}/receipts/{}",
        gw.addr,
        lines["outside"]["invocation"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(refused.status().as_u16(), 404);

    // The same work through UCAN 1.0 is answered from the ucanto run…
    let native = native_add(&gw, &operator, &module, 20, 22).await;
    assert_eq!(native.body.out, Out::Ok(Ipld::Integer(42)));
    assert_eq!(
        native.body.meta.get(META_MEMOIZED),
        Some(&Ipld::Link(stored.cid())),
        "memoized from the ucanto run"
    );
    // …and the other way round: 5 + 6 ran through UCAN 1.0 before the P-256 ucanto client asked.
    let p256 = stored_receipt(&gw, lines["p256"]["invocation"].as_str().unwrap()).await;
    assert_eq!(
        p256.body.meta.get(META_MEMOIZED),
        Some(&Ipld::Link(earlier.cid())),
        "memoized from the UCAN 1.0 run"
    );
    gw.stop().await.unwrap();
}

/// `add(a, b)` invoked through UCAN 1.0 by the subject itself; the gateway's receipt.
async fn native_add(
    gw: &Running,
    operator: &SigningKey,
    module: &[u8],
    a: i128,
    b: i128,
) -> Receipt {
    let args = BTreeMap::from([
        ("module".to_owned(), Ipld::Bytes(module.to_vec())),
        ("func".to_owned(), Ipld::String("add".into())),
        (
            "args".to_owned(),
            Ipld::List(vec![Ipld::Integer(a), Ipld::Integer(b)]),
        ),
    ]);
    let inv = InvocationBuilder::new(operator.did(), Command::parse("/wasm/run").unwrap(), args)
        .audience(gw.did.clone())
        .expires(Some(unix_now() + 300))
        .nonce(format!("native {a} {b}").into_bytes())
        .sign(operator)
        .unwrap();
    let mut c = Container::default();
    c.tokens.push(inv.bytes().to_vec());
    let response = reqwest::Client::new()
        .post(format!("http://{}/", gw.addr))
        .header("content-type", "application/octet-stream")
        .body(c.encode(Format::Raw))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let tokens = Container::decode(&response.bytes().await.unwrap())
        .unwrap()
        .tokens;
    let receipt = Receipt::decode(&tokens[0]).unwrap();
    receipt.verify(Some(&gw.did)).unwrap();
    receipt
}

async fn stored_receipt(gw: &Running, cid: &str) -> Receipt {
    let response = reqwest::get(format!("http://{}/receipts/{cid}", gw.addr))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let tokens = Container::decode(&response.bytes().await.unwrap())
        .unwrap()
        .tokens;
    let receipt = Receipt::decode(&tokens[0]).unwrap();
    receipt.verify(Some(&gw.did)).unwrap();
    receipt
}

/// Posts `body` with headers; gives status, content type and body.
async fn post(gw: &Running, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().post(format!("http://{}/", gw.addr));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test]
async fn the_car_transport_answers_415_406_and_400_as_ucanto_server_does() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&operator_seed()));
    let gw = gateway(dir.path(), &operator).await;

    // The statuses are @ucanto/server's; the bodies are the gateway's JSON refusal shape.
    let error_name = |content_type: &str, body: &[u8]| {
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(json["error"]["message"].is_string(), "{json}");
        json["error"]["name"].as_str().unwrap().to_owned()
    };
    let (status, content_type, body) =
        post(&gw, &[("content-type", "application/json")], b"{}".to_vec()).await;
    assert_eq!(status, 415);
    assert_eq!(error_name(&content_type, &body), "UnsupportedMediaType");
    let (status, content_type, body) = post(
        &gw,
        &[("content-type", CAR), ("accept", "application/json")],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 406);
    assert_eq!(error_name(&content_type, &body), "NotAcceptable");
    let (status, content_type, body) = post(
        &gw,
        &[("content-type", CAR), ("accept", CAR)],
        b"not a car".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_name(&content_type, &body), "MalformedMessage");

    // A well-formed message with nothing to execute gets an empty report, as a CAR.
    let root = ucan_gateway::ipld::to_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "ucanto/message@7.0.0".to_owned(),
        Ipld::Map(BTreeMap::from([("execute".to_owned(), Ipld::List(vec![]))])),
    )])))
    .unwrap();
    let cid = ucan_gateway::ipld::dag_cbor_cid(&root);
    let car = ucan_gateway::ucanto::car::Car::encode(cid, &[(cid, root)]);
    let (status, content_type, body) = post(&gw, &[("content-type", CAR)], car).await;
    assert_eq!((status, content_type.as_str()), (200, CAR));
    let report = ucan_gateway::ucanto::car::Car::decode(&body).unwrap();
    assert_eq!(report.blocks.len(), 1);

    // An ability no route offers: a signed HandlerNotFound receipt, counted under "other" (the
    // sender's `can` never becomes a metrics label).
    let (inv, name, report) =
        ucanto_refusal(&gw, &operator, &operator, "evil/label", Some(60)).await;
    assert_eq!(name, "HandlerNotFound");
    assert!(report.blocks.contains_key(&inv), "the invocation is echoed");
    let metrics = reqwest::get(format!("http://{}/metrics", gw.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"command="other",outcome="HandlerNotFound""#),
        "{metrics}"
    );
    assert!(!metrics.contains("evil"), "{metrics}");

    // The gateway's own rules hold for ucanto too: a subject it does not serve, a missing expiry.
    let stranger = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&operator_seed()));
    let (_, name, _) = ucanto_refusal(&gw, &stranger, &stranger, "wasm/run", Some(60)).await;
    assert_eq!(name, "InvalidSubject");
    let (_, name, _) = ucanto_refusal(&gw, &operator, &operator, "wasm/run", None).await;
    assert_eq!(name, "MissingExpiry");
    gw.stop().await.unwrap();
}

/// Sends one self-issued ucanto invocation of `can` on `subject`'s resource and expects a signed
/// error receipt; gives the invocation's CID, the error name and the report.
async fn ucanto_refusal(
    gw: &Running,
    subject: &SigningKey,
    issuer: &SigningKey,
    can: &str,
    ttl: Option<i64>,
) -> (cid::Cid, String, ucan_gateway::ucanto::car::Car) {
    use ucan_gateway::ucanto::car::Car;
    use ucan_gateway::ucanto::receipt::UcantoReceipt;
    use ucan_gateway::ucanto::token::{Capability, Ucan, UcanFields};
    let (inv, inv_bytes) = Ucan::issue(
        &UcanFields {
            aud: gw.did.clone(),
            att: vec![Capability {
                with: subject.did(),
                can: can.into(),
                nb: BTreeMap::new(),
            }],
            exp: ttl.map(|ttl| unix_now() + ttl),
            ..UcanFields::default()
        },
        issuer,
    )
    .unwrap();
    let root = ucan_gateway::ipld::to_dag_cbor(&Ipld::Map(BTreeMap::from([(
        "ucanto/message@7.0.0".to_owned(),
        Ipld::Map(BTreeMap::from([(
            "execute".to_owned(),
            Ipld::List(vec![Ipld::Link(inv)]),
        )])),
    )])))
    .unwrap();
    let cid = ucan_gateway::ipld::dag_cbor_cid(&root);
    let car = Car::encode(cid, &[(cid, root), (inv, inv_bytes)]);
    let (status, _, body) = post(gw, &[("content-type", CAR)], car).await;
    assert_eq!(status, 200);
    let report = Car::decode(&body).unwrap();
    let Ok(Ipld::Map(root)) =
        ucan_gateway::ipld::from_dag_cbor_strict(&report.blocks[&report.root.unwrap()])
    else {
        panic!("report root")
    };
    let Some(Ipld::Map(message)) = root.get("ucanto/message@7.0.0") else {
        panic!("report tag")
    };
    let Some(Ipld::Map(receipts)) = message.get("report") else {
        panic!("report map")
    };
    let Some(Ipld::Link(receipt)) = receipts.get(&inv.to_string()) else {
        panic!("no receipt for the invocation")
    };
    let ocm = UcantoReceipt::verify(&report.blocks[receipt], &gw.did).unwrap();
    let Some(Ipld::Map(out)) = ocm.get("out") else {
        panic!("out")
    };
    let Some(Ipld::Map(error)) = out.get("error") else {
        panic!("expected an error: {out:?}")
    };
    let Some(Ipld::String(name)) = error.get("name") else {
        panic!("error name")
    };
    (inv, name.clone(), report)
}
