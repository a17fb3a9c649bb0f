//! Prometheus metrics: invocations by command and outcome, request latency, Wasm fuel used and store
//! latency. Kept apart from HTTP so the gateway can record what only it knows (fuel, store timings).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The gateway's metrics and the registry that exports them.
pub struct Metrics {
    registry: Registry,
    /// Invocations by command and outcome (`ok`, `error`, or a refusal name).
    pub invocations: IntCounterVec,
    /// Time from request to response, by command.
    pub latency: HistogramVec,
    /// Wasm fuel consumed, by command.
    pub fuel: IntCounterVec,
    /// Store operation latency, by operation.
    pub store_latency: HistogramVec,
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new(
                "ucan_gateway_invocations_total",
                "Invocations by command and outcome",
            ),
            &["command", "outcome"],
        )
        .expect("static metric definition");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "ucan_gateway_invocation_seconds",
                "Time to answer an invocation",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["command"],
        )
        .expect("static metric definition");
        let fuel = IntCounterVec::new(
            Opts::new(
                "ucan_gateway_wasm_fuel_total",
                "Wasm fuel consumed by tasks",
            ),
            &["command"],
        )
        .expect("static metric definition");
        let store_latency = HistogramVec::new(
            HistogramOpts::new("ucan_gateway_store_seconds", "Store operation latency").buckets(
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
                ],
            ),
            &["op"],
        )
        .expect("static metric definition");
        for metric in [
            Box::new(invocations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(fuel.clone()),
            Box::new(store_latency.clone()),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        Metrics {
            registry,
            invocations,
            latency,
            fuel,
            store_latency,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
