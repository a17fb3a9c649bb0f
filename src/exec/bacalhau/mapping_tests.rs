//! Unit tests of the job mapping: caps, the stricter request, exact numbers, malformed arguments.

use super::*;

fn map(json: &str) -> BTreeMap<String, Ipld> {
    match crate::ipld::from_dag_json(json).unwrap() {
        Ipld::Map(m) => m,
        _ => unreachable!(),
    }
}

const CAPS: Caps = Caps {
    cpu_milli: 2000,
    memory_bytes: 1 << 30,
    disk_bytes: 1 << 32,
    gpu: 1,
    timeout: Duration::from_secs(600),
};

fn mapped(command: &str, args: &str, meta: &str) -> Result<(Value, Duration), MappingError> {
    let (args, meta) = (map(args), map(meta));
    let request = JobRequest {
        command,
        args: &args,
        meta: &meta,
        ipvm_memory: None,
        ipvm_timeout: None,
        name: "n",
        labels: BTreeMap::new(),
    };
    job(&request, &CAPS, &Defaults::default())
}

#[test]
fn caps_hold_and_defaults_are_lowered_to_them() {
    for over in [
        r#"{"cpu": 2001}"#,
        r#"{"memory": 1073741825}"#,
        r#"{"gpu": 2}"#,
        r#"{"disk": 4294967297}"#,
        r#"{"timeout": 601}"#,
    ] {
        let args = format!(r#"{{"image": "a", "resources": {over}}}"#);
        assert!(
            matches!(
                mapped(DOCKER_RUN, &args, "{}"),
                Err(MappingError::OverLimit(_))
            ),
            "{over}"
        );
        let meta = format!(r#"{{"bacalhau/config": {over}}}"#);
        assert!(
            matches!(
                mapped(DOCKER_RUN, r#"{"image": "a"}"#, &meta),
                Err(MappingError::OverLimit(_))
            ),
            "meta {over}"
        );
    }
    let (job, timeout) = mapped(DOCKER_RUN, r#"{"image": "a"}"#, "{}").unwrap();
    assert_eq!(timeout, CAPS.timeout);
    // 512 MiB default memory fits under the 1 GiB cap; CPU default 500m.
    assert_eq!(
        job["Tasks"][0]["Resources"],
        json!({ "CPU": "500m", "Memory": "536870912" })
    );
    let small = Caps {
        cpu_milli: 250,
        memory_bytes: 1 << 20,
        ..CAPS
    };
    let args = map(r#"{"image": "a"}"#);
    let empty = BTreeMap::new();
    let request = JobRequest {
        command: DOCKER_RUN,
        args: &args,
        meta: &empty,
        ipvm_memory: None,
        ipvm_timeout: None,
        name: "n",
        labels: BTreeMap::new(),
    };
    let (lowered, _) = super::job(&request, &small, &Defaults::default()).unwrap();
    assert_eq!(
        lowered["Tasks"][0]["Resources"],
        json!({ "CPU": "250m", "Memory": "1048576" })
    );
}

#[test]
fn the_stricter_request_wins_between_args_and_meta() {
    let (job, timeout) = mapped(
        DOCKER_RUN,
        r#"{"image": "a", "resources": {"cpu": 1500, "timeout": 300}}"#,
        r#"{"bacalhau/config": {"cpu": 700, "timeout": 900}}"#,
    )
    .unwrap();
    assert_eq!(job["Tasks"][0]["Resources"]["CPU"], "700m");
    assert_eq!(timeout, Duration::from_secs(300));
}

/// A number is taken as the caller wrote it or refused: no rounding, no dropping a value of the
/// wrong type for a default, no zero read by Bacalhau as "use your default".
#[test]
fn numbers_are_taken_exactly_or_refused() {
    let job = |spec: &str| format!(r#"{{"job": {{"Type": "batch", "Tasks": [{spec}]}}}}"#);
    let docker = r#""Name": "t", "Engine": {"Type": "docker", "Params": {"Image": "a"}}"#;
    let refused = [
        (
            r#"{"image": "a", "resources": {"cpu": 1.5}}"#.to_owned(),
            "must be an integer, not a float",
        ),
        (
            r#"{"image": "a", "resources": {"cpu": 0}}"#.to_owned(),
            "at least 1",
        ),
        (
            r#"{"image": "a", "resources": {"memory": 0}}"#.to_owned(),
            "at least 1",
        ),
        (
            r#"{"image": "a", "resources": {"disk": 0}}"#.to_owned(),
            "at least 1",
        ),
        (
            r#"{"image": "a", "resources": {"timeout": 0}}"#.to_owned(),
            "at least 1",
        ),
        (
            r#"{"image": "a", "resources": {"timeout": 2.5}}"#.to_owned(),
            "must be an integer",
        ),
        (
            job(&format!(r#"{{{docker}, "Resources": {{"CPU": 2}}}}"#)),
            "Resources.CPU must be a string",
        ),
        (
            job(&format!(
                r#"{{{docker}, "Resources": {{"Memory": 1073741824}}}}"#
            )),
            "Resources.Memory must be a string",
        ),
        (
            job(&format!(
                r#"{{{docker}, "Resources": {{"CPU": "0.0005"}}}}"#
            )),
            "whole number of millicores",
        ),
        (
            job(&format!(r#"{{{docker}, "Resources": "big"}}"#)),
            "Resources must be a map",
        ),
        (
            job(&format!(
                r#"{{{docker}, "Timeouts": {{"TotalTimeout": 1.5}}}}"#
            )),
            "whole number of seconds",
        ),
        (
            job(&format!(
                r#"{{{docker}, "Timeouts": {{"TotalTimeout": "60"}}}}"#
            )),
            "whole number of seconds",
        ),
        (
            job(&format!(
                r#"{{{docker}, "Timeouts": {{"ExecutionTimeout": -5}}}}"#
            )),
            "whole number of seconds",
        ),
        (
            job(&format!(r#"{{{docker}, "Timeouts": {{"Total": 60}}}}"#)),
            "not a Bacalhau timeout",
        ),
    ];
    for (args, needle) in refused {
        let command = if args.contains(r#""job""#) {
            JOB_RUN
        } else {
            DOCKER_RUN
        };
        match mapped(command, &args, "{}") {
            Err(MappingError::InvalidArgs(m)) => assert!(m.contains(needle), "{args}: {m}"),
            other => panic!("{args}: {other:?}"),
        }
    }
    let e = mapped(
        DOCKER_RUN,
        r#"{"image": "a", "parameters": ["-n", 5]}"#,
        "{}",
    )
    .unwrap_err();
    assert_eq!(
        e,
        MappingError::InvalidArgs("parameters[1] must be a string, not an integer".into())
    );
    let meta = r#"{"bacalhau/config": {"cpu": 0}}"#;
    assert!(matches!(
        mapped(DOCKER_RUN, r#"{"image": "a"}"#, meta),
        Err(MappingError::InvalidArgs(_))
    ));

    // A spec's execution and queue timeouts are kept (the stricter of total and execution
    // holds), not replaced by the route's cap; one above the cap is refused like any other.
    let (spec, timeout) = mapped(
        JOB_RUN,
        &job(&format!(
            r#"{{{docker}, "Timeouts": {{"ExecutionTimeout": 100, "QueueTimeout": 30}}}}"#
        )),
        "{}",
    )
    .unwrap();
    assert_eq!(timeout, CAPS.timeout);
    assert_eq!(
        spec["Tasks"][0]["Timeouts"],
        json!({ "ExecutionTimeout": 100, "TotalTimeout": 600, "QueueTimeout": 30 })
    );
    let (spec, _) = mapped(
        JOB_RUN,
        &job(&format!(
            r#"{{{docker}, "Timeouts": {{"ExecutionTimeout": 500, "TotalTimeout": 200}}}}"#
        )),
        "{}",
    )
    .unwrap();
    assert_eq!(
        spec["Tasks"][0]["Timeouts"],
        json!({ "ExecutionTimeout": 200, "TotalTimeout": 200 })
    );
    assert!(matches!(
        mapped(
            JOB_RUN,
            &job(&format!(
                r#"{{{docker}, "Timeouts": {{"ExecutionTimeout": 601}}}}"#
            )),
            "{}"
        ),
        Err(MappingError::OverLimit(_))
    ));
}

/// `ipvm/config.timeout` is in milliseconds, Bacalhau's timeouts in whole seconds: a request
/// that would have to be rounded (or a zero, which Bacalhau reads as "none") is refused.
#[test]
fn ipvm_settings_must_fit_bacalhau_units() {
    let args = map(r#"{"image": "a"}"#);
    let empty = BTreeMap::new();
    let with = |memory: Option<u64>, timeout_ms: Option<u64>| {
        let request = JobRequest {
            command: DOCKER_RUN,
            args: &args,
            meta: &empty,
            ipvm_memory: memory,
            ipvm_timeout: timeout_ms.map(Duration::from_millis),
            name: "n",
            labels: BTreeMap::new(),
        };
        job(&request, &CAPS, &Defaults::default())
    };
    for ms in [1500, 500, 0] {
        match with(None, Some(ms)) {
            Err(MappingError::InvalidArgs(m)) => {
                assert!(m.contains("whole number of seconds"), "{m}")
            }
            other => panic!("{ms} ms: {other:?}"),
        }
    }
    assert!(matches!(
        with(Some(0), None),
        Err(MappingError::InvalidArgs(_))
    ));
    let (spec, timeout) = with(Some(1 << 20), Some(2000)).unwrap();
    assert_eq!(timeout, Duration::from_secs(2));
    assert_eq!(spec["Tasks"][0]["Timeouts"]["TotalTimeout"], 2);
    assert_eq!(spec["Tasks"][0]["Resources"]["Memory"], "1048576");
}

#[test]
fn malformed_arguments_and_settings_are_named() {
    let cases = [
        (DOCKER_RUN, r#"{}"#, "{}", "image"),
        (
            DOCKER_RUN,
            r#"{"image": "a", "volumes": {}}"#,
            "{}",
            "unknown argument",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "mounts": {"relative": "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"}}"#,
            "{}",
            "absolute",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "mounts": {"/in/../etc": "https://x"}}"#,
            "{}",
            "absolute",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "mounts": {"/in": "file:///etc"}}"#,
            "{}",
            "CID link",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "mounts": {"/in": "ipfs://nope"}}"#,
            "{}",
            "does not name a CID",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "env": {"A": 1}}"#,
            "{}",
            "env",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "resources": {"cpus": 1}}"#,
            "{}",
            "unknown key",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a", "resources": {"cpu": -1}}"#,
            "{}",
            "negative",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a"}"#,
            r#"{"bacalhau/config": {"priority": 1}}"#,
            "unknown key",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a"}"#,
            r#"{"bacalhau/config": {"labels": {"a": 1}}}"#,
            "label",
        ),
        (
            DOCKER_RUN,
            r#"{"image": "a"}"#,
            r#"{"bacalhau/config": {"constraints": [{"key": "a", "operator": "~"}]}}"#,
            "operator",
        ),
        (WASM_RUN, r#"{"entrypoint": "_start"}"#, "{}", "module"),
        (
            WASM_RUN,
            r#"{"module": "https://x", "imports": "https://y"}"#,
            "{}",
            "imports",
        ),
        ("/wasi/run", r#"{}"#, "{}", "does not serve"),
    ];
    for (command, args, meta, needle) in cases {
        let e = mapped(command, args, meta).expect_err(args);
        assert!(e.to_string().contains(needle), "{args} {meta}: {e}");
    }
}

#[test]
fn quantities() {
    assert_eq!(parse_cpu("500m").unwrap(), 500);
    assert_eq!(parse_cpu("2").unwrap(), 2000);
    assert_eq!(parse_cpu("0.25").unwrap(), 250);
    assert!(parse_cpu("lots").is_err());
    assert_eq!(parse_cpu("1.2500").unwrap(), 1250);
    assert_eq!(parse_cpu(".5").unwrap(), 500);
    assert_eq!(parse_cpu("3.").unwrap(), 3000);
    assert_eq!(parse_cpu("0").unwrap(), 0);
    // Not a whole number of millicores, or not a plain quantity: refused, never rounded.
    for text in [
        "0.0005",
        "1.0015",
        "1.5m",
        "1e3",
        "-1",
        "+1",
        ".",
        "",
        "m",
        "inf",
        "NaN",
        " 1",
        "99999999999999999999",
    ] {
        assert!(parse_cpu(text).is_err(), "{text:?}");
    }
    assert_eq!(parse_bytes("512Mb").unwrap(), 512_000_000);
    assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
    assert_eq!(parse_bytes("4096").unwrap(), 4096);
    assert!(parse_bytes("1.5Gb").is_err());
    assert!(parse_bytes("99999999999999999999Tb").is_err());
}
