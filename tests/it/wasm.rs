//! The Wasm engine, in obeyed/violated pairs: each limit or rule is shown holding for a guest that
//! keeps it and firing for one that breaks it. Guests are WAT, inline, compiled here.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cid::Cid;
use ipld_core::ipld::Ipld;
use ucan_gateway::exec::wasm::{Limits, WasiRequest, WasmEngine};
use ucan_gateway::exec::{ExecErrorKind, Outcome};
use ucan_gateway::ipld::{RAW, cid_for};

/// One engine for the whole test binary, as in production (tests that count cache hits make
/// their own so the counters are theirs alone).
fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WasmEngine::new().expect("engine starts"))
}

fn limits() -> Limits {
    Limits {
        fuel: 10_000_000,
        memory_bytes: 4 << 20,
        timeout: Duration::from_secs(10),
        max_output_bytes: 64 * 1024,
        ..Limits::default()
    }
}

/// The default limits with one change.
fn limits_with(change: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = limits();
    change(&mut limits);
    limits
}

fn module(wat: &str) -> (Cid, Vec<u8>) {
    let bytes = wat::parse_str(wat).expect("test WAT parses");
    (cid_for(RAW, &bytes), bytes)
}

fn core(wat: &str, func: &str, args: &[Ipld], limits: Limits) -> Outcome {
    let (cid, bytes) = module(wat);
    engine()
        .run_core(&cid, &bytes, func, args, limits)
        .expect("the engine runs the task")
}

fn cbor(wat: &str, func: &str, input: &Ipld, limits: Limits) -> Outcome {
    let (cid, bytes) = module(wat);
    engine()
        .run_cbor(&cid, &bytes, func, input, limits)
        .expect("the engine runs the task")
}

fn wasi(wat: &str, request: WasiRequest, limits: Limits) -> Outcome {
    let (cid, bytes) = module(wat);
    engine()
        .run_wasi(&cid, &bytes, request, limits)
        .expect("the engine runs the task")
}

fn int(n: i128) -> Ipld {
    Ipld::Integer(n)
}

#[track_caller]
fn ok_value(outcome: &Outcome) -> &Ipld {
    match outcome {
        Outcome::Ok { value, .. } => value,
        Outcome::Err { name, message, .. } => panic!("expected success, got {name}: {message}"),
    }
}

#[track_caller]
fn failure(outcome: &Outcome) -> (&'static str, &str) {
    match outcome {
        Outcome::Err { name, message, .. } => (name, message.as_str()),
        Outcome::Ok { value, .. } => panic!("expected a failure, got {value:?}"),
    }
}

/// The fields of a WASI result.
struct WasiResult {
    exit_code: i128,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    truncated: bool,
}

#[track_caller]
fn wasi_result(outcome: &Outcome) -> WasiResult {
    let Ipld::Map(map) = ok_value(outcome) else {
        panic!("WASI result is a map")
    };
    assert_eq!(map.len(), 4, "exactly exit_code, stdout, stderr, truncated");
    let bytes = |key: &str| match map.get(key) {
        Some(Ipld::Bytes(b)) => b.clone(),
        other => panic!("{key} should be bytes, got {other:?}"),
    };
    WasiResult {
        exit_code: match map.get("exit_code") {
            Some(Ipld::Integer(n)) => *n,
            other => panic!("exit_code should be an integer, got {other:?}"),
        },
        stdout: bytes("stdout"),
        stderr: bytes("stderr"),
        truncated: match map.get("truncated") {
            Some(Ipld::Bool(b)) => *b,
            other => panic!("truncated should be a bool, got {other:?}"),
        },
    }
}

const ARITH: &str = r#"
(module
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "divmod") (param i64 i64) (result i64 i64)
    (i64.div_s (local.get 0) (local.get 1))
    (i64.rem_s (local.get 0) (local.get 1)))
  (func (export "scale") (param f64 f32) (result f64)
    (f64.mul (local.get 0) (f64.promote_f32 (local.get 1))))
  (func (export "nothing"))
  (func (export "nan") (result f64) (f64.div (f64.const 0) (f64.const 0)))
  (func (export "boom") unreachable)
  (memory (export "not_a_function") 1))
"#;

#[test]
fn add_returns_a_bare_integer_and_reports_fuel() {
    let outcome = core(ARITH, "add", &[int(2), int(3)], limits());
    assert_eq!(ok_value(&outcome), &int(5));
    assert!(outcome.fuel_used() > 0 && outcome.fuel_used() < 100);
    // Wasm integers wrap, and results read as signed.
    let outcome = core(ARITH, "add", &[int(0x7FFF_FFFF), int(1)], limits());
    assert_eq!(ok_value(&outcome), &int(i128::from(i32::MIN)));
}

#[test]
fn several_results_are_a_list_and_none_is_null() {
    let outcome = core(ARITH, "divmod", &[int(-7), int(2)], limits());
    assert_eq!(ok_value(&outcome), &Ipld::List(vec![int(-3), int(-1)]));
    let outcome = core(ARITH, "nothing", &[], limits());
    assert_eq!(ok_value(&outcome), &Ipld::Null);
}

#[test]
fn floats_in_and_out() {
    let outcome = core(ARITH, "scale", &[Ipld::Float(1.5), int(4)], limits());
    assert_eq!(ok_value(&outcome), &Ipld::Float(6.0));
    // NaN cannot go into a receipt.
    let outcome = core(ARITH, "nan", &[], limits());
    assert_eq!(failure(&outcome).0, "Trap");
}

#[test]
fn arguments_that_do_not_fit_are_invalid_args() {
    for args in [
        vec![int(1)],
        vec![int(1), int(2), int(3)],
        vec![int(1), Ipld::String("2".into())],
        vec![int(1), Ipld::Float(2.0)],
        vec![int(1), int(1 << 40)],
    ] {
        let outcome = core(ARITH, "add", &args, limits());
        assert_eq!(failure(&outcome).0, "InvalidArgs", "args {args:?}");
        assert_eq!(outcome.fuel_used(), 0, "nothing ran");
    }
}

#[test]
fn unreachable_is_a_trap() {
    let outcome = core(ARITH, "boom", &[], limits());
    let (name, message) = failure(&outcome);
    assert_eq!(name, "Trap");
    assert!(message.contains("unreachable"), "{message}");
}

#[test]
fn missing_export_is_no_such_export() {
    for func in ["subtract", "not_a_function"] {
        let outcome = core(ARITH, func, &[], limits());
        assert_eq!(failure(&outcome).0, "NoSuchExport", "{func}");
    }
}

#[test]
fn garbage_and_imports_are_invalid_module() {
    let garbage = b"\0asm\x01\0\0\0 definitely not a module".to_vec();
    let cid = cid_for(RAW, &garbage);
    let outcome = engine()
        .run_core(&cid, &garbage, "f", &[], limits())
        .unwrap();
    assert_eq!(failure(&outcome).0, "InvalidModule");
    // Text is not accepted: only binary modules are content-addressed and run.
    let text = ARITH.as_bytes();
    let outcome = engine()
        .run_core(
            &cid_for(RAW, text),
            text,
            "add",
            &[int(1), int(2)],
            limits(),
        )
        .unwrap();
    assert_eq!(failure(&outcome).0, "InvalidModule");
    // Plain runs get no host functions at all.
    let importer = r#"(module (import "env" "f" (func)) (func (export "g")))"#;
    let outcome = core(importer, "g", &[], limits());
    assert_eq!(failure(&outcome).0, "InvalidModule");
}

#[test]
fn bytes_that_do_not_match_the_cid_are_refused() {
    let (_, bytes) = module(ARITH);
    let wrong = cid_for(RAW, b"something else");
    let err = engine()
        .run_core(&wrong, &bytes, "add", &[int(1), int(2)], limits())
        .unwrap_err();
    assert_eq!(err.kind, ExecErrorKind::CidMismatch);
    assert!(
        !engine().is_cached(&wrong),
        "nothing was cached under the wrong CID"
    );
}

const SPIN: &str = r#"(module (func (export "spin") (loop $l (br $l))))"#;

#[test]
fn fuel_obeyed_and_exhausted() {
    let obeyed = core(
        ARITH,
        "add",
        &[int(1), int(1)],
        limits_with(|l| l.fuel = 1_000),
    );
    assert_eq!(ok_value(&obeyed), &int(2));
    let small = limits_with(|l| l.fuel = 50_000);
    let outcome = core(SPIN, "spin", &[], small);
    assert_eq!(failure(&outcome).0, "OutOfFuel");
    assert_eq!(outcome.fuel_used(), 50_000, "all the fuel was burnt");
}

#[test]
fn deadline_obeyed_and_passed() {
    let quick = limits_with(|l| l.timeout = Duration::from_millis(50));
    assert_eq!(
        ok_value(&core(ARITH, "add", &[int(1), int(1)], quick)),
        &int(2)
    );
    let endless = Limits {
        fuel: 1_000_000_000_000,
        ..quick
    };
    let started = Instant::now();
    let outcome = core(SPIN, "spin", &[], endless);
    let elapsed = started.elapsed();
    assert_eq!(failure(&outcome).0, "Timeout");
    assert!(
        elapsed >= Duration::from_millis(50),
        "not cut short: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "stopped promptly: {elapsed:?}"
    );
    // Fuel after a timeout is only a lower bound (see docs/wasm-abi.md), but never above budget.
    assert!(outcome.fuel_used() < endless.fuel);
}

const GROW: &str = r#"
(module
  (memory 1)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
"#;

#[test]
fn memory_growth_within_and_beyond_the_limit() {
    let two_pages = limits_with(|l| l.memory_bytes = 2 * 65_536);
    // Within: grows from 1 page to 2 and returns the old size.
    assert_eq!(ok_value(&core(GROW, "grow", &[int(1)], two_pages)), &int(1));
    // Beyond: a named limit failure, not a generic trap and not a silent -1.
    let outcome = core(GROW, "grow", &[int(2)], two_pages);
    let (name, message) = failure(&outcome);
    assert_eq!(name, "MemoryLimit");
    assert!(message.contains("131072"), "{message}");
    // A module whose initial memory is already too big fails the same way.
    let big = r#"(module (memory 3) (func (export "f")))"#;
    assert_eq!(failure(&core(big, "f", &[], two_pages)).0, "MemoryLimit");
}

#[test]
fn table_growth_is_bounded() {
    let wat = r#"
    (module
      (table 1 funcref)
      (func (export "grow") (param i32) (result i32)
        (table.grow (ref.null func) (local.get 0))))
    "#;
    assert_eq!(ok_value(&core(wat, "grow", &[int(10)], limits())), &int(1));
    let outcome = core(wat, "grow", &[int(1_000_000)], limits());
    assert_eq!(failure(&outcome).0, "MemoryLimit");
}

const CBOR_WRAP: &str = include_str!("../../examples/guests/cbor_wrap.wat");

fn sample_input() -> Ipld {
    Ipld::Map(BTreeMap::from([
        ("n".to_string(), int(-42)),
        (
            "list".to_string(),
            Ipld::List(vec![Ipld::Bool(true), Ipld::String("x".into()), Ipld::Null]),
        ),
        ("bytes".to_string(), Ipld::Bytes(vec![0, 1, 2, 255])),
    ]))
}

#[test]
fn cbor_abi_round_trip() {
    let input = sample_input();
    let outcome = cbor(CBOR_WRAP, "wrap", &input, limits());
    let expected = Ipld::Map(BTreeMap::from([("input".to_string(), input.clone())]));
    assert_eq!(ok_value(&outcome), &expected);
    assert!(outcome.fuel_used() > 0);
    let outcome = cbor(CBOR_WRAP, "echo", &input, limits());
    assert_eq!(ok_value(&outcome), &input);
    // An input DAG-CBOR cannot carry never reaches the guest.
    let outcome = cbor(CBOR_WRAP, "echo", &Ipld::Float(f64::NAN), limits());
    assert_eq!(failure(&outcome).0, "InvalidArgs");
    assert_eq!(outcome.fuel_used(), 0);
}

#[test]
fn cbor_abi_large_input_grows_guest_memory() {
    let input = Ipld::Bytes(vec![7; 200_000]);
    let roomy = limits_with(|l| l.max_output_bytes = 300_000);
    assert_eq!(ok_value(&cbor(CBOR_WRAP, "echo", &input, roomy)), &input);
    // The same input against a memory limit the guest cannot fit in.
    let cramped = Limits {
        memory_bytes: 65_536,
        ..roomy
    };
    let outcome = cbor(CBOR_WRAP, "echo", &input, cramped);
    assert_eq!(failure(&outcome).0, "MemoryLimit");
}

#[test]
fn cbor_output_within_and_over_the_limit() {
    let input = Ipld::String("0123456789".into());
    let fits = limits_with(|l| l.max_output_bytes = 11);
    assert_eq!(ok_value(&cbor(CBOR_WRAP, "echo", &input, fits)), &input);
    let tight = limits_with(|l| l.max_output_bytes = 10);
    assert_eq!(
        failure(&cbor(CBOR_WRAP, "echo", &input, tight)).0,
        "OutputTooLarge"
    );
}

/// A guest that breaks the ABI in the way its export name says.
const HOSTILE: &str = r#"
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "\ff")
  (func (export "alloc") (param i32) (result i32) (i32.const 16))
  ;; out_ptr just below the end of memory, out_len running past it
  (func (export "past_end") (param i32 i32) (result i64)
    (i64.const 0x0000_FFF0_0000_0100))
  ;; out_ptr far beyond memory
  (func (export "far") (param i32 i32) (result i64)
    (i64.const -1))
  ;; in bounds, but not DAG-CBOR (0xff is a lone "break")
  (func (export "garbage") (param i32 i32) (result i64)
    (i64.const 0x0000_0000_0000_0001))
  ;; the wrong signature
  (func (export "wrong_type") (param i32) (result i32) (i32.const 0)))
"#;

#[test]
fn hostile_abi_guests_fail_without_harm() {
    let input = int(1);
    for func in ["past_end", "far"] {
        let outcome = cbor(
            HOSTILE,
            func,
            &input,
            limits_with(|l| l.max_output_bytes = usize::MAX),
        );
        let (name, message) = failure(&outcome);
        assert_eq!(name, "Trap", "{func}");
        assert!(message.contains("outside memory"), "{func}: {message}");
    }
    // With the usual output limit, a huge claimed length is refused before anything is read.
    assert_eq!(
        failure(&cbor(HOSTILE, "far", &input, limits())).0,
        "OutputTooLarge"
    );
    let outcome = cbor(HOSTILE, "garbage", &input, limits());
    assert!(failure(&outcome).1.contains("DAG-CBOR"));
    assert_eq!(
        failure(&cbor(HOSTILE, "wrong_type", &input, limits())).0,
        "InvalidModule"
    );
    assert_eq!(
        failure(&cbor(HOSTILE, "absent", &input, limits())).0,
        "NoSuchExport"
    );
}

#[test]
fn hostile_alloc_is_caught() {
    let wat = r#"
    (module
      (memory (export "memory") 1)
      (func (export "alloc") (param i32) (result i32) (i32.const 65535))
      (func (export "f") (param i32 i32) (result i64) (i64.const 0)))
    "#;
    let outcome = cbor(
        wat,
        "f",
        &Ipld::String("more than one byte".into()),
        limits(),
    );
    let (name, message) = failure(&outcome);
    assert_eq!(name, "Trap");
    assert!(message.contains("alloc"), "{message}");
    // Without `alloc` or `memory` the module does not implement the ABI.
    let bare = r#"(module (func (export "f") (param i32 i32) (result i64) (i64.const 0)))"#;
    assert_eq!(
        failure(&cbor(bare, "f", &int(1), limits())).0,
        "InvalidModule"
    );
}

/// WASI imports used by the command modules below.
const WASI_IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; write(fd, ptr, len): one iovec at 0, nwritten at 8
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
"#;

fn command(body: &str) -> String {
    format!("(module {WASI_IMPORTS} {body})")
}

#[test]
fn wasi_stdio_and_exit_code() {
    let wat = command(
        r#"
        (data (i32.const 200) "hello\n")
        (func (export "_start")
          (call $write (i32.const 1) (i32.const 200) (i32.const 6))
          ;; read stdin into 300.., iovec at 32, nread at 48; echo it to stderr
          (i32.store (i32.const 32) (i32.const 300))
          (i32.store (i32.const 36) (i32.const 100))
          (drop (call $fd_read (i32.const 0) (i32.const 32) (i32.const 1) (i32.const 48)))
          (call $write (i32.const 2) (i32.const 300) (i32.load (i32.const 48)))
          (call $proc_exit (i32.const 3))
          unreachable)
        "#,
    );
    let request = WasiRequest {
        stdin: b"from stdin".to_vec(),
        ..WasiRequest::default()
    };
    let result = wasi_result(&wasi(&wat, request, limits()));
    assert_eq!(result.exit_code, 3);
    assert_eq!(result.stdout, b"hello\n");
    assert_eq!(result.stderr, b"from stdin");
    assert!(!result.truncated);

    // Returning from `_start` is exit code 0; closed stdin reads as end of file.
    let wat = command(r#"(func (export "_start"))"#);
    let result = wasi_result(&wasi(&wat, WasiRequest::default(), limits()));
    assert_eq!(result.exit_code, 0);
    assert!(result.stdout.is_empty() && result.stderr.is_empty());
}

#[test]
fn wasi_output_within_and_beyond_the_limit() {
    let wat = command(
        r#"
        (data (i32.const 200) "0123456789")
        (func (export "_start")
          (call $write (i32.const 1) (i32.const 200) (i32.const 10))
          (call $write (i32.const 1) (i32.const 200) (i32.const 10)))
        "#,
    );
    let fits = limits_with(|l| l.max_output_bytes = 20);
    let result = wasi_result(&wasi(&wat, WasiRequest::default(), fits));
    assert_eq!(result.stdout, b"01234567890123456789");
    assert!(!result.truncated);
    let tight = limits_with(|l| l.max_output_bytes = 15);
    let result = wasi_result(&wasi(&wat, WasiRequest::default(), tight));
    assert_eq!(result.stdout, b"012345678901234");
    assert!(result.truncated);
    assert_eq!(result.exit_code, 0, "truncation does not kill the guest");
}

#[test]
fn wasi_sees_only_the_request_args_and_env() {
    let wat = command(
        r#"
        (func (export "_start")
          (drop (call $args_sizes_get (i32.const 100) (i32.const 104)))
          (drop (call $environ_sizes_get (i32.const 108) (i32.const 112)))
          (call $proc_exit
            (i32.add (i32.mul (i32.load (i32.const 100)) (i32.const 10)) (i32.load (i32.const 108)))))
        "#,
    );
    // Nothing inherited from the host (which certainly has environment variables).
    let result = wasi_result(&wasi(&wat, WasiRequest::default(), limits()));
    assert_eq!(result.exit_code, 0);
    let request = WasiRequest {
        args: vec!["prog".into(), "--flag".into()],
        env: vec![("A".into(), "1".into())],
        stdin: Vec::new(),
    };
    let result = wasi_result(&wasi(&wat, request, limits()));
    assert_eq!(result.exit_code, 21);
    // A request a C guest could not receive intact is refused before anything runs.
    let bad = WasiRequest {
        env: vec![("A=B".into(), "1".into())],
        ..WasiRequest::default()
    };
    assert_eq!(failure(&wasi(&wat, bad, limits())).0, "InvalidArgs");
}

const CLOCK_AND_RANDOM: &str = r#"
    (func (export "_start")
      (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 400)))
      (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 408)))
      (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 416)))
      (drop (call $random_get (i32.const 424) (i32.const 16)))
      (call $write (i32.const 1) (i32.const 400) (i32.const 40))
      ;; a buffer running past the end of memory is EFAULT, not a host crash
      (call $proc_exit (call $random_get (i32.const 65530) (i32.const 100))))
"#;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[test]
fn wasi_clocks_and_randomness_are_deterministic() {
    let wat = command(CLOCK_AND_RANDOM);
    let request = WasiRequest {
        stdin: b"seed material".to_vec(),
        ..WasiRequest::default()
    };
    let first = wasi_result(&wasi(&wat, request.clone(), limits()));
    let second = wasi_result(&wasi(&wat, request, limits()));
    assert_eq!(first.exit_code, 21, "EFAULT");
    assert_eq!(first.stdout.len(), 40);
    assert_eq!(first.stdout, second.stdout, "two runs see the same world");
    assert_eq!(
        u64_at(&first.stdout, 0),
        0,
        "the wall clock is the Unix epoch"
    );
    let (t0, t1) = (u64_at(&first.stdout, 8), u64_at(&first.stdout, 16));
    assert!(t1 > t0, "the monotonic clock moves forward");
    let random = &first.stdout[24..40];
    assert!(random.iter().any(|&b| b != 0));
    // A different request draws a different stream, with the same clocks.
    let other = wasi_result(&wasi(&wat, WasiRequest::default(), limits()));
    assert_eq!(other.stdout[..24], first.stdout[..24]);
    assert_ne!(other.stdout[24..40], first.stdout[24..40]);
}

#[test]
fn wasi_sleep_advances_virtual_time_without_waiting() {
    let wat = command(
        r#"
        (func (export "_start")
          (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1000)))
          ;; one subscription at 800: userdata 7, clock, monotonic, 5 s relative
          (i64.store (i32.const 800) (i64.const 7))
          (i32.store8 (i32.const 808) (i32.const 0))
          (i32.store (i32.const 816) (i32.const 1))
          (i64.store (i32.const 824) (i64.const 5000000000))
          (i64.store (i32.const 832) (i64.const 0))
          (i32.store16 (i32.const 840) (i32.const 0))
          (i32.store (i32.const 1100)
            (call $poll_oneoff (i32.const 800) (i32.const 900) (i32.const 1) (i32.const 960)))
          (drop (call $clock_time_get (i32.const 1) (i64.const 1) (i32.const 1008)))
          (call $write (i32.const 1) (i32.const 1000) (i32.const 16))
          (call $write (i32.const 1) (i32.const 900) (i32.const 16))
          (call $proc_exit
            (i32.add (i32.load (i32.const 1100)) (i32.mul (i32.load (i32.const 960)) (i32.const 10)))))
        "#,
    );
    let started = Instant::now();
    let result = wasi_result(&wasi(&wat, WasiRequest::default(), limits()));
    assert!(started.elapsed() < Duration::from_secs(3), "no real sleep");
    assert_eq!(result.exit_code, 10, "success and one event");
    let (t0, t1) = (u64_at(&result.stdout, 0), u64_at(&result.stdout, 8));
    assert!(
        t1 - t0 >= 5_000_000_000,
        "slept 5 s of virtual time: {t0} → {t1}"
    );
    assert_eq!(u64_at(&result.stdout, 16), 7, "event carries the userdata");
    assert_eq!(&result.stdout[24..27], &[0, 0, 0], "no error, clock event");
}

#[test]
fn wasi_has_no_files() {
    let wat = command(
        r#"
        (data (i32.const 500) "/etc/passwd")
        (func (export "_start")
          ;; fd 3 would be the first preopen; there is none
          (i32.store8 (i32.const 700) (call $fd_prestat_get (i32.const 3) (i32.const 704)))
          (call $write (i32.const 1) (i32.const 700) (i32.const 1))
          (call $proc_exit
            (call $path_open (i32.const 3) (i32.const 0) (i32.const 500) (i32.const 11)
              (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 600))))
        "#,
    );
    let result = wasi_result(&wasi(&wat, WasiRequest::default(), limits()));
    const EBADF: u8 = 8;
    assert_eq!(result.stdout, [EBADF], "no preopened directory");
    assert_eq!(result.exit_code, i128::from(EBADF), "path_open refused");
}

#[test]
fn wasi_limits_and_shape() {
    let fails_with =
        |wat: &str, limits: Limits| failure(&wasi(wat, WasiRequest::default(), limits)).0;
    let spin = command(r#"(func (export "_start") (loop $l (br $l)))"#);
    assert_eq!(
        fails_with(&spin, limits_with(|l| l.fuel = 10_000)),
        "OutOfFuel"
    );
    let no_start = command(r#"(func (export "main"))"#);
    assert_eq!(fails_with(&no_start, limits()), "NoSuchExport");
    let foreign = r#"(module (import "env" "open_socket" (func)) (func (export "_start")))"#;
    assert_eq!(fails_with(foreign, limits()), "InvalidModule");
    let bad_exit = command(r#"(func (export "_start") (call $proc_exit (i32.const 200)))"#);
    assert_eq!(fails_with(&bad_exit, limits()), "Trap");
}

#[test]
fn second_run_of_a_cid_does_not_recompile() {
    let engine = WasmEngine::with_cache_capacity(2).unwrap();
    let (cid, bytes) = module(ARITH);
    assert!(!engine.is_cached(&cid));
    for _ in 0..3 {
        let outcome = engine
            .run_core(&cid, &bytes, "add", &[int(1), int(2)], limits())
            .unwrap();
        assert_eq!(ok_value(&outcome), &int(3));
    }
    let stats = engine.cache_stats();
    assert_eq!((stats.compiles, stats.hits, stats.entries), (1, 2, 1));
    assert!(engine.is_cached(&cid));
    // The same compiled module also serves the ABI and (linked separately) WASI.
    let (cid2, bytes2) = module(CBOR_WRAP);
    engine
        .run_cbor(&cid2, &bytes2, "echo", &int(1), limits())
        .unwrap();
    engine
        .run_cbor(&cid2, &bytes2, "echo", &int(1), limits())
        .unwrap();
    assert_eq!(engine.cache_stats().compiles, 2);
    // A third module evicts the least recently used (ARITH was used before CBOR_WRAP).
    let (cid3, bytes3) = module(SPIN);
    engine
        .run_core(&cid3, &bytes3, "spin", &[], limits_with(|l| l.fuel = 10))
        .unwrap();
    let stats = engine.cache_stats();
    assert_eq!((stats.compiles, stats.evictions, stats.entries), (3, 1, 2));
    assert!(!engine.is_cached(&cid) && engine.is_cached(&cid2) && engine.is_cached(&cid3));
}

#[test]
fn a_cache_hit_ignores_the_bytes() {
    // Once compiled, a CID is served from the cache: the bytes are not even looked at.
    let engine = WasmEngine::new().unwrap();
    let (cid, bytes) = module(ARITH);
    engine
        .run_core(&cid, &bytes, "add", &[int(1), int(2)], limits())
        .unwrap();
    let outcome = engine
        .run_core(&cid, &[], "add", &[int(2), int(2)], limits())
        .unwrap();
    assert_eq!(ok_value(&outcome), &int(4));
}

#[test]
fn runs_in_parallel_share_one_engine() {
    let engine = Arc::new(WasmEngine::new().unwrap());
    let (cid, bytes) = module(ARITH);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (engine, bytes) = (Arc::clone(&engine), bytes.clone());
            std::thread::spawn(move || {
                engine
                    .run_core(&cid, &bytes, "add", &[int(i), int(100)], limits())
                    .unwrap()
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let outcome = handle.join().unwrap();
        assert_eq!(ok_value(&outcome), &int(i as i128 + 100));
    }
    assert!(engine.cache_stats().compiles >= 1);
}
