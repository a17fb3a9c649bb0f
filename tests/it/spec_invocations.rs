//! The UCAN spec's own invocation vectors (`tests/fixtures/ucan/invocation.json`): every valid
//! invocation validates at the vector's time, and every invalid one is refused with the error the
//! spec names.

use std::collections::HashMap;

use base64::Engine;
use ucan_gateway::ucan::validate::{self, NoCache, NoRevocations, Options};
use ucan_gateway::ucan::{Delegation, Invocation};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ucan/invocation.json"
);

/// The bytes of a DAG-JSON `{"/": {"bytes": "…"}}`.
fn bytes(value: &serde_json::Value) -> Vec<u8> {
    let text = value["/"]["bytes"].as_str().expect("a bytes node");
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text.trim_end_matches('='))
        .expect("base64")
}

/// Validates one vector: `Ok(())` or the error's spec name.
fn run(vector: &serde_json::Value) -> Result<(), String> {
    let invocation =
        Invocation::decode(&bytes(&vector["invocation"])).map_err(|e| e.kind.name().to_owned())?;
    let mut proofs = HashMap::new();
    for proof in vector["proofs"].as_array().expect("proofs") {
        let dlg = Delegation::decode(&bytes(proof)).map_err(|e| e.kind.name().to_owned())?;
        proofs.insert(dlg.cid(), dlg);
    }
    let time = vector["time"].as_i64().expect("time");
    validate::validate(
        &invocation,
        &proofs,
        Options::strict(time),
        &NoRevocations,
        &NoCache,
    )
    .map(|_| ())
    .map_err(|e| e.kind.name().to_owned())
}

#[test]
fn the_spec_invocation_vectors_hold() {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let fixtures: serde_json::Value = serde_json::from_str(&text).unwrap();
    let valid = fixtures["valid"].as_array().unwrap();
    let invalid = fixtures["invalid"].as_array().unwrap();
    assert!(
        valid.len() >= 7 && invalid.len() >= 13,
        "the file is the full set"
    );
    for vector in valid {
        let name = vector["name"].as_str().unwrap();
        assert_eq!(run(vector), Ok(()), "valid vector {name:?}");
    }
    for vector in invalid {
        let name = vector["name"].as_str().unwrap();
        let expected = vector["error"]["name"].as_str().unwrap();
        assert_eq!(
            run(vector),
            Err(expected.to_owned()),
            "invalid vector {name:?}"
        );
    }
}
