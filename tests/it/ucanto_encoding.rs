//! The gateway's dag-ucan output, for ucanto clients: tokens from its encoder checked by the real
//! `@ipld/dag-ucan` (via `tests/ucanto/check-token.mjs`), and receipt effects issued as ucanto
//! invocations.

use std::collections::{BTreeMap, HashMap};
use std::process::Command as Process;

use ipld_core::ipld::Ipld;
use ucan_gateway::did::SigningKey;
use ucan_gateway::receipt::Out;
use ucan_gateway::ucan::Command;
use ucan_gateway::ucan::validate::unix_now;

use crate::ucanto::{hex, operator_seed};

/// Tokens issued by the gateway's encoder (receipt effects use it) decode and verify with
/// `@ipld/dag-ucan`; the caveats exercise the DAG-JSON signing input on every kind of value.
#[test]
fn tokens_issued_here_verify_with_the_real_dag_ucan() {
    let Some(node_dir) =
        crate::support::node::interop_dir("tokens_issued_here_verify_with_the_real_dag_ucan")
    else {
        return;
    };
    use ucan_gateway::ucanto::token::{Capability, Ucan, UcanFields};

    let issuer = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&operator_seed()));
    let audience = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&operator_seed()));
    let link = ucan_gateway::ipld::dag_cbor_cid(b"x");
    let nb = BTreeMap::from([
        ("bytes".to_owned(), Ipld::Bytes(vec![0, 1, 2, 250])),
        ("link".to_owned(), Ipld::Link(link)),
        (
            "text".to_owned(),
            Ipld::String("héllo ✓ \"q\" / \\ \n\t</script>".into()),
        ),
        ("n".to_owned(), Ipld::Integer(-42)),
        ("big".to_owned(), Ipld::Integer(9_007_199_254_740_991)),
        ("flag".to_owned(), Ipld::Bool(true)),
        ("none".to_owned(), Ipld::Null),
        (
            "nested".to_owned(),
            Ipld::Map(BTreeMap::from([
                (
                    "b".to_owned(),
                    Ipld::List(vec![Ipld::Integer(1), Ipld::String("z".into())]),
                ),
                ("a".to_owned(), Ipld::Map(BTreeMap::new())),
            ])),
        ),
    ]);
    let tokens: Vec<Vec<u8>> = [
        UcanFields {
            aud: audience.did(),
            att: vec![Capability {
                with: issuer.did(),
                can: "wasm/run".into(),
                nb: nb.clone(),
            }],
            exp: Some(4_102_444_800),
            nbf: Some(1_700_000_000),
            nnc: Some("nonce".into()),
            fct: vec![Ipld::Map(BTreeMap::from([(
                "ipvm/config".to_owned(),
                Ipld::Map(BTreeMap::from([("fuel".to_owned(), Ipld::Integer(5))])),
            )]))],
            prf: vec![link],
        },
        UcanFields {
            aud: audience.did(),
            att: vec![Capability {
                with: "ucan:*".into(),
                can: "*".into(),
                nb: BTreeMap::new(),
            }],
            exp: None,
            ..UcanFields::default()
        },
    ]
    .iter()
    .map(|fields| Ucan::issue(fields, &issuer).unwrap().1)
    .collect();

    let lines = check_tokens(&node_dir, &tokens);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["decoded"], true, "{line}");
        assert_eq!(line["verified"], true, "{line}");
        assert_eq!(line["iss"], issuer.did().as_str(), "{line}");
    }
    assert_eq!(lines[0]["can"][0], "wasm/run");
    assert_eq!(lines[1]["exp"], serde_json::Value::Null);

    // The same check fails a token signed by a key other than its `iss`: signed by `other`, then
    // `iss` swapped for the issuer's.
    let other = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&operator_seed()));
    let (_, signed_by_other) = Ucan::issue(
        &UcanFields {
            aud: audience.did(),
            att: vec![Capability {
                with: "ucan:*".into(),
                can: "*".into(),
                nb: BTreeMap::new(),
            }],
            exp: None,
            ..UcanFields::default()
        },
        &other,
    )
    .unwrap();
    let field = |bytes: &[u8], key: &str| match ucan_gateway::ipld::from_dag_cbor_strict(bytes) {
        Ok(Ipld::Map(map)) => map[key].clone(),
        _ => panic!("not a map"),
    };
    let Ok(Ipld::Map(mut forged)) = ucan_gateway::ipld::from_dag_cbor_strict(&signed_by_other)
    else {
        panic!("not a map")
    };
    forged.insert("iss".to_owned(), field(&tokens[1], "iss"));
    let forged = ucan_gateway::ipld::to_dag_cbor(&Ipld::Map(forged)).unwrap();
    let line = &check_tokens(&node_dir, &[forged])[0];
    assert_eq!(line["decoded"], true, "{line}");
    assert_eq!(line["verified"], false, "{line}");
}

/// What `check-token.mjs` (the real `@ipld/dag-ucan`) says of each token.
fn check_tokens(dir: &std::path::Path, tokens: &[Vec<u8>]) -> Vec<serde_json::Value> {
    use std::io::Write;
    let mut child = Process::new("node")
        .arg("check-token.mjs")
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running node");
    {
        let mut stdin = child.stdin.take().unwrap();
        for token in tokens {
            writeln!(stdin, "{}", hex(token)).unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "check-token.mjs failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A backend (standing in for `wasm`) whose every task asks for more work: one fork and a join.
struct Forker;

#[async_trait::async_trait]
impl ucan_gateway::exec::Executor for Forker {
    async fn execute(
        &self,
        task: &ucan_gateway::task::Task,
        _: &ucan_gateway::config::Limits,
    ) -> Result<ucan_gateway::exec::Executed, ucan_gateway::exec::ExecError> {
        use ucan_gateway::receipt::{Effect, Effects};
        let effect = |cmd: &str| Effect {
            cmd: Command::parse(cmd).unwrap(),
            sub: task.resource.clone(),
            args: BTreeMap::from([("x".to_owned(), Ipld::Integer(1))]),
            nonce: b"n".to_vec(),
            iss: None,
            aud: None,
            meta: Some(BTreeMap::from([(
                "ipvm/config".to_owned(),
                Ipld::Map(BTreeMap::from([("fuel".to_owned(), Ipld::Integer(9))])),
            )])),
            prf: None,
            exp: Some(unix_now() + 60),
        };
        Ok(ucan_gateway::exec::Executed {
            out: Out::Ok(Ipld::Integer(1)),
            fuel_used: None,
            run_time: None,
            effects: Effects {
                fork: vec![effect("/wasm/run")],
                join: Some(effect("/blob/put")),
            },
        })
    }
}

/// Effects reach a ucanto client as dag-ucan invocations issued by the gateway, linked from the
/// receipt's `fx` and carried in the report.
#[tokio::test]
async fn effects_are_ucanto_invocations_signed_by_the_gateway() {
    forked(true).await;
}

/// Without authority for them (no `gateway_effects`), the effects are refused in the receipt.
#[tokio::test]
async fn effects_without_authority_are_refused_in_the_ucanto_receipt() {
    forked(false).await;
}

async fn forked(own: bool) {
    use std::sync::Arc;
    use ucan_gateway::gateway::Gateway;
    use ucan_gateway::ucanto::capability::EFFECT_FACT;
    use ucan_gateway::ucanto::car::Car;
    use ucan_gateway::ucanto::receipt::UcantoReceipt;
    use ucan_gateway::ucanto::token::{Capability, Ucan, UcanFields};

    let operator = SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&operator_seed()));
    let policy = ucan_gateway::config::OperatorPolicy::parse(
        &format!(
            // Effects on the ucanto path can only use the gateway's own authority.
            "subjects = [\"{}\", \"self\"]\n[[route]]\ncommand = \"/wasm/run\"\nbackend = \"wasm\"\neffect = \"nondestructive\"\ngateway_effects = {own}\n[[route]]\ncommand = \"/blob/put\"\nbackend = \"wasm\"\neffect = \"nondestructive\"\ngateway_effects = {own}\n",
            operator.did()
        ),
        "test",
    )
    .unwrap();
    let store = Arc::new(ucan_gateway::store::SqliteStore::memory().await.unwrap());
    let executors: HashMap<String, Arc<dyn ucan_gateway::exec::Executor>> =
        HashMap::from([("wasm".to_owned(), Arc::new(Forker) as _)]);
    let key = SigningKey::generate(ucan_gateway::did::KeyAlg::Ed25519);
    let gateway = Gateway::new(key, policy, store, executors, 60)
        .await
        .unwrap();

    let (inv, inv_bytes) = Ucan::issue(
        &UcanFields {
            aud: gateway.did().to_owned(),
            att: vec![Capability {
                with: operator.did(),
                can: "wasm/run".into(),
                nb: BTreeMap::new(),
            }],
            exp: Some(unix_now() + 60),
            ..UcanFields::default()
        },
        &operator,
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
    let report = Car::decode(&gateway.invoke_ucanto(&car).await.unwrap()).unwrap();

    let link = |value: Option<&Ipld>| match value {
        Some(Ipld::Link(cid)) => *cid,
        other => panic!("expected a link, got {other:?}"),
    };
    let Ok(Ipld::Map(root)) =
        ucan_gateway::ipld::from_dag_cbor_strict(&report.blocks[&report.root.unwrap()])
    else {
        panic!("report root")
    };
    let receipt = match &root["ucanto/message@7.0.0"] {
        Ipld::Map(message) => match &message["report"] {
            Ipld::Map(receipts) => link(receipts.get(&inv.to_string())),
            _ => panic!("report"),
        },
        _ => panic!("message"),
    };
    let ocm = UcantoReceipt::verify(&report.blocks[&receipt], gateway.did()).unwrap();
    if !own {
        let name = match ocm.get("out") {
            Some(Ipld::Map(out)) => match out.get("error") {
                Some(Ipld::Map(error)) => error.get("name").cloned(),
                _ => None,
            },
            _ => None,
        };
        assert_eq!(
            name,
            Some(Ipld::String("UnauthorizedEffect".into())),
            "{ocm:?}"
        );
        return;
    }
    let Some(Ipld::Map(fx)) = ocm.get("fx") else {
        panic!("fx")
    };
    let fork = match fx.get("fork") {
        Some(Ipld::List(items)) => link(items.first()),
        other => panic!("fork: {other:?}"),
    };
    let join = link(fx.get("join"));
    for (cid, can) in [(fork, "wasm/run"), (join, "blob/put")] {
        let effect = Ucan::decode(cid, &report.blocks[&cid]).unwrap();
        effect.verify().unwrap();
        assert_eq!(effect.iss, gateway.did());
        assert_eq!(effect.att[0].can, can);
        assert_eq!(
            effect.att[0].with,
            gateway.did(),
            "the gateway's own authority"
        );
        assert_eq!(effect.att[0].nb["x"], Ipld::Integer(1));
        assert_eq!(effect.nnc.as_deref(), Some("6e"));
        // Marked as an effect of the stored receipt, so it can never serve as a delegation; its
        // meta travels as a fact.
        let fact = |key: &str| {
            effect.fct.iter().find_map(|fact| match fact {
                Ipld::Map(map) => map.get(key).cloned(),
                _ => None,
            })
        };
        let stored = gateway.receipt(&inv).await.unwrap().receipt.cid();
        assert_eq!(fact(EFFECT_FACT), Some(Ipld::Link(stored)));
        assert!(fact("ipvm/config").is_some());
    }
}
