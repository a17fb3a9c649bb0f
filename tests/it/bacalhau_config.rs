//! The operator policy's Bacalhau parts: `[[bacalhau]]` backends and `[route.compute]` caps resolve to
//! the values written (defaults where nothing is), and every mistake is refused at its position.

use std::path::Path;
use std::time::Duration;

use ucan_gateway::config::{Compute, OperatorPolicy, PolicyFileErrorKind as Kind};
use ucan_gateway::exec::bacalhau::{BacalhauBackend, BackendAuth};
use ucan_gateway::ucan::Command;

fn parse(text: &str) -> Result<OperatorPolicy, ucan_gateway::config::PolicyFileError> {
    OperatorPolicy::parse(text, "p.toml")
}

/// The policy's Bacalhau networks, in the order declared.
fn bacalhau(p: &OperatorPolicy) -> Vec<BacalhauBackend> {
    p.backends
        .iter()
        .filter_map(|b| b.settings::<BacalhauBackend>().cloned())
        .collect()
}

const NET: &str = "[[bacalhau]]\nname = \"net\"\nurl = \"http://127.0.0.1:1234\"\n";

#[test]
fn the_example_resolves_to_what_it_says() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/examples/bacalhau.toml");
    let p = OperatorPolicy::load(&path).unwrap();
    assert_eq!(
        bacalhau(&p),
        vec![BacalhauBackend {
            name: "bacalhau".into(),
            url: "https://bacalhau.example.org:1234".into(),
            auth: BackendAuth::ApiKeyEnv("BACALHAU_API_KEY".into()),
            wait: Duration::from_secs(10),
            publisher: "ipfs".into(),
        }]
    );
    let docker = p.route(&Command::parse("/docker/run").unwrap()).unwrap();
    assert_eq!(docker.backend, "bacalhau");
    assert_eq!(
        docker.limits.compute,
        Compute {
            cpu_milli: 4000,
            gpu: 0,
            disk_bytes: 20 << 30
        }
    );
    assert_eq!(docker.limits.timeout, Duration::from_secs(1800));
}

#[test]
fn backends_and_caps_take_defaults_and_auth_forms() {
    let p = parse(&format!("{NET}[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"nondestructive\"\n")).unwrap();
    assert_eq!(
        bacalhau(&p)[0],
        BacalhauBackend::quick("net", "http://127.0.0.1:1234")
    );
    assert_eq!(p.routes[0].limits.compute, Compute::default());
    assert_eq!(
        Compute::default(),
        Compute {
            cpu_milli: 1000,
            gpu: 0,
            disk_bytes: 10 << 30
        }
    );

    let basic = parse("[[bacalhau]]\nname = \"b\"\nurl = \"https://x\"\nusername = \"u\"\npassword_env = \"PW\"\nwait = \"250ms\"\npublisher = \"s3\"\n").unwrap();
    assert_eq!(
        bacalhau(&basic)[0].auth,
        BackendAuth::Basic {
            username: "u".into(),
            password_env: "PW".into()
        }
    );
    assert_eq!(bacalhau(&basic)[0].wait, Duration::from_millis(250));
    assert_eq!(bacalhau(&basic)[0].publisher, "s3");
}

#[test]
fn mistakes_are_refused_where_they_are() {
    let cases: &[(&str, usize, usize, Kind, &str)] = &[
        (
            "[[bacalhau]]\nname = \"Net\"\nurl = \"http://x\"\n",
            2,
            8,
            Kind::Backend,
            "lowercase",
        ),
        (
            "[[bacalhau]]\nname = \"wasm\"\nurl = \"http://x\"\n",
            2,
            8,
            Kind::Backend,
            "already taken",
        ),
        (&format!("{NET}{NET}"), 5, 8, Kind::Backend, "already taken"),
        (
            "[[bacalhau]]\nname = \"n\"\nurl = \"ftp://x\"\n",
            3,
            7,
            Kind::Backend,
            "http:// or https://",
        ),
        (
            "[[bacalhau]]\nname = \"n\"\nurl = \"http://x\"\napi_key_env = \"K\"\nusername = \"u\"\n",
            2,
            8,
            Kind::Backend,
            "either api_key_env",
        ),
        (
            "[[bacalhau]]\nname = \"n\"\nurl = \"http://x\"\nwait = \"soon\"\n",
            4,
            8,
            Kind::Duration,
            "invalid duration",
        ),
        (
            "[[bacalhau]]\nname = \"n\"\nurl = \"http://x\"\ntoken = \"t\"\n",
            4,
            1,
            Kind::Toml,
            "unknown field",
        ),
        (
            &format!(
                "{NET}[[route]]\ncommand = \"/docker/run\"\nbackend = \"other\"\neffect = \"pure\"\n"
            ),
            6,
            11,
            Kind::Backend,
            "expected one of wasm, wasi, blob, net",
        ),
        (
            &format!(
                "{NET}[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"pure\"\n[route.compute]\ncpu = \"lots\"\n"
            ),
            9,
            7,
            Kind::Size,
            "CPU",
        ),
        (
            &format!(
                "{NET}[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"pure\"\n[route.compute]\ndisk = \"1 parsec\"\n"
            ),
            9,
            8,
            Kind::Size,
            "invalid size",
        ),
    ];
    for (text, line, column, kind, needle) in cases {
        let e = parse(text).expect_err(text);
        assert_eq!(
            (e.line, e.column, e.kind),
            (*line, *column, *kind),
            "{text}\n{e}"
        );
        assert!(e.message.contains(needle), "{e}");
    }
}

#[test]
fn quick_start_adds_the_three_routes_without_replacing_the_operators() {
    let mut p = parse(&format!(
        "{NET}[[route]]\ncommand = \"/docker/run\"\nbackend = \"net\"\neffect = \"destructive\"\n"
    ))
    .unwrap();
    let (backend, offers) = ucan_gateway::exec::bacalhau::quick("bacalhau", "http://127.0.0.1:9");
    p.add_backend(backend, &offers);
    let backend = |c: &str| {
        p.route(&Command::parse(c).unwrap())
            .map(|r| r.backend.clone())
    };
    assert_eq!(
        backend("/docker/run").as_deref(),
        Some("net"),
        "the operator's route stays"
    );
    assert_eq!(backend("/wasm32-wasi/run").as_deref(), Some("bacalhau"));
    assert_eq!(backend("/bacalhau/job/run").as_deref(), Some("bacalhau"));
    assert_eq!(bacalhau(&p).len(), 2);
    let quick = p
        .route(&Command::parse("/wasm32-wasi/run").unwrap())
        .unwrap();
    assert_eq!(
        (quick.limits.timeout, quick.limits.memory_bytes),
        (Duration::from_secs(600), 2 << 30)
    );
}
