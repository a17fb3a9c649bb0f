//! What the Wasm engine reports a run consumed, for receipts and delegation quotas: the fuel taken
//! from the run's store and the time from instantiation to the end of the call, both also for runs
//! that fail, and nothing for runs that never start.

use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::exec::Outcome;
use ucan_gateway::exec::wasm::{Limits, WasmEngine};
use ucan_gateway::ipld::{RAW, cid_for};

const ADD_WAT: &str = r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#;
const SPIN_WAT: &str = r#"(module (func (export "spin") (loop br 0)))"#;

fn run(engine: &WasmEngine, wat: &str, func: &str, args: &[Ipld], limits: Limits) -> Outcome {
    let bytes = wat::parse_str(wat).unwrap();
    engine
        .run_core(&cid_for(RAW, &bytes), &bytes, func, args, limits)
        .unwrap()
}

fn limits(fuel: u64, timeout: Duration) -> Limits {
    Limits {
        fuel,
        memory_bytes: 4 << 20,
        timeout,
        max_output_bytes: 1024,
        ..Limits::default()
    }
}

#[test]
fn a_run_reports_the_fuel_it_burnt_and_how_long_it_ran() {
    let engine = WasmEngine::new().unwrap();
    let ints = [Ipld::Integer(2), Ipld::Integer(3)];

    let quick = run(
        &engine,
        ADD_WAT,
        "add",
        &ints,
        limits(1_000_000, Duration::from_secs(5)),
    );
    assert_eq!(quick.value(), Some(&Ipld::Integer(5)));
    assert!(
        quick.fuel_used() > 0 && quick.fuel_used() < 100,
        "{quick:?}"
    );
    assert!(quick.run_time() < Duration::from_secs(1), "{quick:?}");

    // Stopped by its deadline: it ran at least that long (its fuel is only a lower bound, see
    // docs/wasm-abi.md, so the time is what tells).
    let timeout = Duration::from_millis(150);
    let stopped = run(
        &engine,
        SPIN_WAT,
        "spin",
        &[],
        limits(1_000_000_000_000, timeout),
    );
    assert_eq!(stopped.error_name(), Some("Timeout"));
    assert!(stopped.run_time() >= timeout, "{stopped:?}");

    // Out of fuel: all of it was burnt.
    let starved = run(
        &engine,
        SPIN_WAT,
        "spin",
        &[],
        limits(50_000, Duration::from_secs(5)),
    );
    assert_eq!(starved.error_name(), Some("OutOfFuel"));
    assert_eq!(starved.fuel_used(), 50_000);
    assert!(starved.run_time() > Duration::ZERO);

    // A run that never starts consumes nothing.
    let bytes = b"not a module".to_vec();
    let invalid = engine
        .run_core(
            &cid_for(RAW, &bytes),
            &bytes,
            "add",
            &ints,
            limits(1_000, Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(invalid.error_name(), Some("InvalidModule"));
    assert_eq!(
        (invalid.fuel_used(), invalid.run_time()),
        (0, Duration::ZERO)
    );
}
