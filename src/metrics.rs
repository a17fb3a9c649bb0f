//! Prometheus metrics: invocations by command and outcome, invocation latency, Wasm fuel used, store
//! latency, HTTP requests by route, the build, and (on Linux) the process. Kept apart from HTTP so
//! the gateway can record what only it knows (fuel, store timings).
//!
//! Names follow Prometheus' naming guide: `_total` counters, `_duration_seconds` histograms, a
//! `_build_info` gauge of 1 carrying the version as a label. Every label value is chosen by the
//! operator or the code (commands the policy routes, route patterns, status codes), never by a
//! caller, so no request can add a series.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
    /// HTTP requests answered, by route pattern, method and status.
    pub http_requests: IntCounterVec,
    /// Time to answer an HTTP request, by route pattern and method.
    pub http_duration: HistogramVec,
    /// HTTP requests being answered now.
    pub http_in_flight: IntGauge,
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
                "ucan_gateway_invocation_duration_seconds",
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
            HistogramOpts::new(
                "ucan_gateway_store_duration_seconds",
                "Store operation latency",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
            &["op"],
        )
        .expect("static metric definition");
        let http_requests = IntCounterVec::new(
            Opts::new(
                "ucan_gateway_http_requests_total",
                "HTTP requests answered, by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "ucan_gateway_http_request_duration_seconds",
                "Time to answer an HTTP request",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 120.0,
            ]),
            &["route", "method"],
        )
        .expect("static metric definition");
        let http_in_flight = IntGauge::new(
            "ucan_gateway_http_requests_in_flight",
            "HTTP requests being answered",
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "ucan_gateway_build_info",
                "Always 1; the labels say which build is running",
            ),
            &["version"],
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for metric in [
            Box::new(invocations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(fuel.clone()),
            Box::new(store_latency.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(http_in_flight.clone()),
            Box::new(build_info),
        ] {
            registry.register(metric).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("metric names are unique");
        Metrics {
            registry,
            invocations,
            latency,
            fuel,
            store_latency,
            http_requests,
            http_duration,
            http_in_flight,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_naming_guide() {
        let m = Metrics::new();
        m.invocations.with_label_values(&["/a", "ok"]).inc();
        m.latency.with_label_values(&["/a"]).observe(0.1);
        m.fuel.with_label_values(&["/a"]).inc_by(5);
        m.store_latency.with_label_values(&["put"]).observe(0.1);
        m.http_requests
            .with_label_values(&["/", "GET", "200"])
            .inc();
        m.http_duration
            .with_label_values(&["/", "GET"])
            .observe(0.1);
        let text = m.render();
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = line.split_once(' ').unwrap();
            names.insert(name.to_owned());
            match kind {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "histogram" => assert!(name.ends_with("_duration_seconds"), "{name}"),
                _ => {}
            }
        }
        for name in [
            "ucan_gateway_invocations_total",
            "ucan_gateway_invocation_duration_seconds",
            "ucan_gateway_wasm_fuel_total",
            "ucan_gateway_store_duration_seconds",
            "ucan_gateway_http_requests_total",
            "ucan_gateway_http_request_duration_seconds",
            "ucan_gateway_http_requests_in_flight",
            "ucan_gateway_build_info",
        ] {
            assert!(names.contains(name), "{name} missing from {names:?}");
        }
    }
}
