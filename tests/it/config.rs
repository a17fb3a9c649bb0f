//! Operator policy files: the embedded default and the examples parse to the values they say, every
//! kind of error points at the exact line and column of the offending value, limits merge per route,
//! and subjects and routes match exactly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::config::{
    Compute, EMBEDDED_DEFAULT, Limits, OperatorPolicy, PolicyFileError,
    PolicyFileErrorKind as Kind, Subject,
};
use ucan_gateway::ipld::from_dag_json;
use ucan_gateway::task::EffectClass;
use ucan_gateway::ucan::Command;

const MIB: u64 = 1024 * 1024;
/// The did:key specification's Ed25519 example.
const ED25519_DID: &str = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
/// A P-256 did:key.
const P256_DID: &str = "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169";

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn parse(text: &str) -> OperatorPolicy {
    OperatorPolicy::parse(text, "test.toml").unwrap_or_else(|e| panic!("should parse: {e}"))
}

fn error(text: &str) -> PolicyFileError {
    match OperatorPolicy::parse(text, "policies/x.toml") {
        Ok(p) => panic!("should be rejected:\n{text}\ngot {p:?}"),
        Err(e) => e,
    }
}

fn cmd(s: &str) -> Command {
    Command::parse(s).unwrap()
}

/// A route with the three required keys, followed by `extra` lines.
fn route(command: &str, extra: &str) -> String {
    format!("[[route]]\ncommand = \"{command}\"\nbackend = \"wasm\"\neffect = \"pure\"\n{extra}")
}

#[test]
fn embedded_default_has_the_three_routes() {
    let p = OperatorPolicy::embedded_default();
    assert_eq!(p.subjects, vec![Subject::Gateway]);
    assert_eq!(p.max_body_bytes, 4 * 1024 * 1024);
    assert_eq!(
        p.defaults,
        Limits {
            fuel: 1_000_000_000,
            memory_bytes: 64 * MIB,
            timeout: Duration::from_secs(5),
            max_input_bytes: 1024 * 1024,
            max_output_bytes: 1024 * 1024,
            compute: Compute::default(),
        }
    );
    let summary: Vec<_> = p
        .routes
        .iter()
        .map(|r| (r.command.as_str(), r.backend.as_str(), r.effect))
        .collect();
    assert_eq!(
        summary,
        [
            ("/wasm/run", "wasm", EffectClass::Pure),
            ("/wasi/run", "wasi", EffectClass::Pure),
            ("/blob/put", "blob", EffectClass::Nondestructive),
        ]
    );
    for r in &p.routes {
        assert_eq!(r.limits, p.defaults, "{}", r.command);
        assert!(r.admission.is_empty(), "{}", r.command);
        assert!(!r.allow_no_expiry, "{}", r.command);
    }
    // The file on disk is the one built in.
    let on_disk = std::fs::read_to_string(policies_dir().join("default.toml")).unwrap();
    assert_eq!(on_disk, EMBEDDED_DEFAULT);
}

/// The values default.toml writes out are the built-in defaults, so an empty file means the same.
#[test]
fn default_file_restates_the_builtin_defaults() {
    let empty = parse("");
    let default = OperatorPolicy::embedded_default();
    assert_eq!(empty.subjects, default.subjects);
    assert_eq!(empty.defaults, default.defaults);
    assert_eq!(empty.defaults, Limits::default());
    assert_eq!(empty.max_body_bytes, default.max_body_bytes);
    assert!(empty.routes.is_empty());
}

#[test]
fn every_example_loads() {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(policies_dir().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            OperatorPolicy::load(&path).unwrap_or_else(|e| panic!("{e}"));
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    names.sort();
    assert_eq!(names, ["bacalhau.toml", "compute-only.toml", "team.toml"]);
}

#[test]
fn team_example_merges_route_limits() {
    let p = OperatorPolicy::load(&policies_dir().join("examples/team.toml")).unwrap();
    assert_eq!(
        p.subjects,
        vec![Subject::Gateway, Subject::Did(ED25519_DID.to_owned())]
    );
    assert_eq!(p.max_body_bytes, 8 * 1024 * 1024);
    let defaults = Limits {
        fuel: 500_000_000,
        memory_bytes: 32 * MIB,
        timeout: Duration::from_secs(2),
        max_input_bytes: 256 * 1024,
        max_output_bytes: 256 * 1024,
        compute: Compute::default(),
    };
    assert_eq!(p.defaults, defaults);

    let wasm = p.route(&cmd("/wasm/run")).unwrap();
    assert_eq!(wasm.limits, defaults);
    assert!(!wasm.allow_no_expiry);
    let ok = from_dag_json(r#"{"func": "add", "args": [1000, 2]}"#).unwrap();
    let too_big = from_dag_json(r#"{"func": "add", "args": [1001, 2]}"#).unwrap();
    assert!(wasm.admission.check(&ok).is_ok());
    assert!(wasm.admission.check(&too_big).is_err());

    // Only the keys the route sets change.
    let wasi = p.route(&cmd("/wasi/run")).unwrap();
    assert_eq!(
        wasi.limits,
        Limits {
            memory_bytes: 128 * MIB,
            timeout: Duration::from_secs(10),
            ..defaults
        }
    );

    let blob = p.route(&cmd("/blob/put")).unwrap();
    assert!(blob.allow_no_expiry);
    assert_eq!(blob.effect, EffectClass::Nondestructive);
    assert_eq!(
        blob.limits,
        Limits {
            max_input_bytes: 6 * 1024 * 1024,
            ..defaults
        }
    );
}

#[test]
fn compute_only_example_has_a_two_rule_admission() {
    let p = OperatorPolicy::load(&policies_dir().join("examples/compute-only.toml")).unwrap();
    assert_eq!(p.max_body_bytes, 65536);
    assert_eq!(p.defaults.timeout, Duration::from_millis(500));
    assert_eq!(p.routes.len(), 1);
    let wasm = &p.routes[0];
    let check = |args: &str| wasm.admission.check(&from_dag_json(args).unwrap());
    assert!(check(r#"{"func": "add", "args": [3, 4]}"#).is_ok());
    assert_eq!(
        check(r#"{"func": "mul", "args": [3, 4]}"#)
            .unwrap_err()
            .index,
        0
    );
    assert_eq!(
        check(r#"{"func": "add", "args": [3000]}"#)
            .unwrap_err()
            .index,
        1
    );
    assert!(check(r#"{"args": [3]}"#).is_err());
}

#[test]
fn display_names_file_line_and_column() {
    let text = format!(
        "subjects = [\"self\"]\n\n{}",
        "[[route]]\ncommand = \"/wasm/run\"\n    backend = \"wsam\"\neffect = \"pure\"\n"
    );
    let e = error(&text);
    assert_eq!(
        e.to_string(),
        "policies/x.toml:5:15: unknown backend \"wsam\" (expected one of wasm, wasi, blob)"
    );
    assert_eq!((e.line, e.column, e.kind), (5, 15, Kind::Backend));
    assert_eq!(e.origin, "policies/x.toml");
}

/// Each case: the file text, then the expected line, column, kind and a part of the message.
#[test]
fn every_error_kind_points_at_its_value() {
    // One case per line, so the table reads as a table.
    #[rustfmt::skip]
    let cases: Vec<(String, usize, usize, Kind, &str)> = vec![
        // TOML syntax: the reader's own position.
        ("subjects = [\"self\"\n".into(), 1, 19, Kind::Toml, "unclosed array"),
        ("max_body = \n".into(), 1, 12, Kind::Toml, "expected"),
        // Unknown keys, in each table.
        ("subjects = [\"self\"]\nbogus = 1\n".into(), 2, 1, Kind::Toml, "unknown field `bogus`"),
        ("[limits]\nfuel = 1\n  memroy = \"1MiB\"\n".into(), 3, 3, Kind::Toml, "unknown field `memroy`"),
        (route("/a", "priority = 3\n"), 5, 1, Kind::Toml, "unknown field `priority`"),
        (route("/a", "[route.limits]\nfule = 3\n"), 6, 1, Kind::Toml, "unknown field `fule`"),
        // Wrong types.
        (route("/a", "allow_no_expiry = \"yes\"\n"), 5, 19, Kind::Toml, "expected a boolean"),
        ("[limits]\nmemory = true\n".into(), 2, 10, Kind::Toml, "expected a size"),
        ("[limits]\nfuel = \"lots\"\n".into(), 2, 8, Kind::Toml, "expected a positive integer"),
        ("[limits]\ntimeout = 5\n".into(), 2, 11, Kind::Toml, "expected a string"),
        // A missing required key points at its route's header.
        (
            format!("{}\n[[route]]\ncommand = \"/b\"\nbackend = \"wasm\"\n", route("/a", "")),
            6, 1, Kind::Toml, "missing field `effect`",
        ),
        // Commands.
        (route("wasm/run", ""), 2, 11, Kind::Command, "must start with '/'"),
        (route("/Wasm/run", ""), 2, 11, Kind::Command, "must be lowercase"),
        (route("/ucan/revoke", ""), 2, 11, Kind::Command, "reserved /ucan namespace"),
        (route("/ucan", ""), 2, 11, Kind::Command, "reserved /ucan namespace"),
        // Backend and effect.
        (
            "[[route]]\ncommand = \"/a\"\nbackend = \"bacalhau\"\neffect = \"pure\"\n".into(),
            3, 11, Kind::Backend, "unknown backend \"bacalhau\" (expected one of wasm, wasi, blob)",
        ),
        (
            "[[route]]\ncommand = \"/a\"\nbackend = \"wasm\"\neffect = \"idempotent\"\n".into(),
            4, 10, Kind::Effect,
            "unknown effect class \"idempotent\" (expected one of pure, nondestructive, destructive)",
        ),
        // Admission policies: bad JSON, an unknown operator, and a multi-line string.
        (route("/a", "admission = '[[\"<=\", \".n\"'\n"), 5, 13, Kind::Admission, "not valid DAG-JSON"),
        (route("/a", "admission = '[[\"~\", \".n\", 1]]'\n"), 5, 13, Kind::Admission, "malformed admission policy at [0]"),
        (route("/a", "admission = '''\n[\n  [\"<=\", \"n\", 1]\n]'''\n"), 5, 13, Kind::Admission, "malformed admission policy at [0]"),
        // Sizes.
        ("max_body = \"4 MiBs\"\n".into(), 1, 12, Kind::Size, "invalid size \"4 MiBs\""),
        ("max_body = \"1.5MiB\"\n".into(), 1, 12, Kind::Size, "invalid size"),
        ("max_body = -1\n".into(), 1, 12, Kind::Size, "must not be negative"),
        ("[limits]\nmax_output = 0\n".into(), 2, 14, Kind::Size, "greater than zero"),
        ("[limits]\nmemory = \"99999999999TiB\"\n".into(), 2, 10, Kind::Size, "too large"),
        (route("/a", "[route.limits]\nmax_input = \"0KiB\"\n"), 6, 13, Kind::Size, "greater than zero"),
        // Durations.
        ("[limits]\ntimeout = \"5 parsecs\"\n".into(), 2, 11, Kind::Duration, "invalid duration"),
        ("[limits]\ntimeout = \"0s\"\n".into(), 2, 11, Kind::Duration, "greater than zero"),
        // Fuel.
        ("[limits]\nfuel = 0\n".into(), 2, 8, Kind::Fuel, "positive integer, not 0"),
        (route("/a", "[route.limits]\nfuel = -7\n"), 6, 8, Kind::Fuel, "positive integer, not -7"),
        // Subjects.
        ("subjects = [\"self\", \"alice\"]\n".into(), 1, 21, Kind::Subject, "must be \"self\" or a did:key"),
        ("subjects = [\n  \"self\",\n  \"did:web:example.com\",\n]\n".into(), 3, 3, Kind::Subject, "not a did:key"),
        ("subjects = [\"did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2\"]\n".into(), 1, 13, Kind::Subject, "malformed DID"),
        (format!("subjects = [\"{ED25519_DID}#key-1\"]\n"), 1, 13, Kind::Subject, "without a fragment"),
        ("subjects = []\n".into(), 1, 12, Kind::Subject, "at least one subject"),
        (format!("subjects = [\"self\", \"{P256_DID}\", \"self\"]\n"), 1, 82, Kind::DuplicateSubject, "subject self is listed twice"),
        // Duplicate routes: the second is reported, naming the first's line.
        (
            format!("{}\n{}\n{}", route("/wasm/run", ""), route("/wasi/run", ""), route("/wasm/run", "")),
            12, 11, Kind::DuplicateRoute, "duplicate route for command /wasm/run (first defined at line 2)",
        ),
    ];
    for (text, line, column, kind, message) in cases {
        let e = error(&text);
        assert_eq!(
            (e.line, e.column, e.kind),
            (line, column, kind),
            "wrong position or kind for\n{text}\ngot {e}"
        );
        assert!(
            e.message.contains(message),
            "message {:?} should contain {message:?}",
            e.message
        );
        assert_eq!(
            e.to_string(),
            format!("policies/x.toml:{line}:{column}: {}", e.message)
        );
    }
}

/// Columns count characters, not bytes, and Windows line endings do not shift them.
#[test]
fn positions_count_characters_across_line_endings() {
    let e = error("# résumé: naïve café\r\n[limits] # ünïcödé\r\nmemory = \"lots\"\r\n");
    assert_eq!((e.line, e.column, e.kind), (3, 10, Kind::Size));
    let e = error("[[route]]\r\ncommand = \"/a\"\r\nbackend = \"wasm\" \r\neffect = \"pür\"\r\n");
    assert_eq!((e.line, e.column, e.kind), (4, 10, Kind::Effect));
    // 'é' is two bytes: the byte offset of "wsam" is 38, its column 38.
    let e = error("route = [{ command = \"/é\", backend = \"wsam\", effect = \"pure\" }]\n");
    assert_eq!((e.line, e.column, e.kind), (1, 38, Kind::Backend));
}

#[test]
fn unreadable_file_has_no_position() {
    let path = policies_dir().join("no-such-file.toml");
    let e = OperatorPolicy::load(&path).unwrap_err();
    assert_eq!((e.line, e.column, e.kind), (0, 0, Kind::Io));
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("{}: cannot read policy file: ", path.display())),
        "{shown}"
    );
}

/// Deeply nested values are refused by the TOML reader rather than exhausting the stack.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let text = format!("a = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(error(&text).kind, Kind::Toml);
    let text = format!("a = {}1{}\n", "{b=".repeat(100_000), "}".repeat(100_000));
    assert_eq!(error(&text).kind, Kind::Toml);
}

#[test]
fn route_limits_override_only_what_they_set() {
    let text = format!(
        "[limits]\nfuel = 1000\ntimeout = \"1s\"\n\n{}\n{}",
        route(
            "/fast",
            "[route.limits]\ntimeout = \"100ms\"\nmax_output = 10\n"
        ),
        route("/plain", "")
    );
    let p = parse(&text);
    let defaults = Limits {
        fuel: 1000,
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    assert_eq!(p.defaults, defaults);
    assert_eq!(
        p.route(&cmd("/fast")).unwrap().limits,
        Limits {
            timeout: Duration::from_millis(100),
            max_output_bytes: 10,
            ..defaults
        }
    );
    assert_eq!(p.route(&cmd("/plain")).unwrap().limits, defaults);
    // A route may also raise a limit above the defaults.
    let p = parse(&route("/big", "limits = { fuel = 5_000_000_000 }\n"));
    assert_eq!(p.routes[0].limits.fuel, 5_000_000_000);
    assert_eq!(p.routes[0].limits.memory_bytes, 64 * MIB);
}

#[test]
fn min_takes_each_field_lower() {
    let a = Limits {
        fuel: 10,
        memory_bytes: 2000,
        timeout: Duration::from_secs(3),
        max_input_bytes: 5,
        max_output_bytes: 600,
        compute: Compute {
            cpu_milli: 500,
            gpu: 2,
            disk_bytes: 10,
        },
    };
    let b = Limits {
        fuel: 20,
        memory_bytes: 1000,
        timeout: Duration::from_millis(3500),
        max_input_bytes: 50,
        max_output_bytes: 60,
        compute: Compute {
            cpu_milli: 1000,
            gpu: 1,
            disk_bytes: 20,
        },
    };
    let expected = Limits {
        fuel: 10,
        memory_bytes: 1000,
        timeout: Duration::from_secs(3),
        max_input_bytes: 5,
        max_output_bytes: 60,
        compute: Compute {
            cpu_milli: 500,
            gpu: 1,
            disk_bytes: 10,
        },
    };
    assert_eq!(a.min(&b), expected);
    assert_eq!(b.min(&a), expected);
    assert_eq!(a.min(&a), a);
}

#[test]
fn honours_self_and_listed_dids_only() {
    let gateway = "did:key:z6MkrZ1r5XBFZjBU34qyD8fueMbMRkKw17BZaq2ivKFjnz2z";
    let only_self = OperatorPolicy::embedded_default();
    assert!(only_self.honours(gateway, gateway));
    assert!(!only_self.honours(ED25519_DID, gateway));
    // "self" follows the gateway's key, whatever it is.
    assert!(only_self.honours(ED25519_DID, ED25519_DID));

    let listed = parse(&format!("subjects = [\"{ED25519_DID}\", \"{P256_DID}\"]"));
    assert_eq!(
        listed.subjects,
        vec![
            Subject::Did(ED25519_DID.to_owned()),
            Subject::Did(P256_DID.to_owned())
        ]
    );
    assert!(listed.honours(ED25519_DID, gateway));
    assert!(listed.honours(P256_DID, gateway));
    // Without "self", the gateway's own authority is not honoured.
    assert!(!listed.honours(gateway, gateway));
    // Matching is exact: no prefixes, no fragments.
    assert!(!listed.honours(&ED25519_DID[..40], gateway));
    assert!(!listed.honours(&format!("{ED25519_DID}#x"), gateway));
    assert!(!listed.honours("", gateway));

    let both = parse(&format!("subjects = [\"self\", \"{P256_DID}\"]"));
    assert!(both.honours(gateway, gateway));
    assert!(both.honours(P256_DID, gateway));
    assert!(!both.honours(ED25519_DID, gateway));
}

#[test]
fn route_lookup_is_exact() {
    let p = parse(&format!(
        "{}\n{}",
        route("/wasm", ""),
        route("/blob/put", "")
    ));
    assert_eq!(p.route(&cmd("/wasm")).unwrap().command, cmd("/wasm"));
    assert!(p.route(&cmd("/wasm/run")).is_none());
    assert!(p.route(&cmd("/blob")).is_none());
    assert!(p.route(&cmd("/blob/put/more")).is_none());
    assert!(p.route(&cmd("/")).is_none());
    let default = OperatorPolicy::embedded_default();
    assert_eq!(default.route(&cmd("/wasi/run")).unwrap().backend, "wasi");
    assert!(default.route(&cmd("/wasm")).is_none());
    assert!(default.route(&cmd("/ucan/revoke")).is_none());
}

#[test]
fn admission_is_kept_as_written() {
    let p = parse(&route(
        "/a",
        "admission = '[[\"==\", \".func\", \"add\"]]'\n",
    ));
    let admission = &p.routes[0].admission;
    assert_eq!(admission.to_string(), r#"[["==",".func","add"]]"#);
    let mut args = std::collections::BTreeMap::new();
    args.insert("func".to_owned(), Ipld::String("sub".to_owned()));
    assert!(admission.check(&Ipld::Map(args)).is_err());
}
