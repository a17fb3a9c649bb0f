//! Logging for `serve`: one line per event on stderr, as text or JSON (`--log-format`), filtered
//! by `RUST_LOG` (default `info`). With the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! spans are exported over OTLP as well.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::serve::LogFormat;

/// What must live as long as logging does (the OTLP exporter flushes when it is dropped).
pub struct Guard {
    #[cfg(feature = "otel")]
    otel: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.otel.take() {
            // Sends the spans still batched.
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber; a second call keeps the first.
pub fn init(format: LogFormat) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        // The current span (with the request id) and its parents go into every line.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    {
        let provider = otel_provider()?;
        let layer = provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider as _;
            tracing_opentelemetry::layer().with_tracer(p.tracer("ucan-gateway"))
        });
        let _ = registry.with(layer).with(filter).try_init();
        Ok(Guard { otel: provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.with(filter).try_init();
        Ok(Guard {})
    }
}

use tracing_subscriber::Layer as _;

/// The OTLP (HTTP/protobuf) span exporter, when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces
/// endpoint) is set; the other `OTEL_*` variables (headers, timeout, batch delay, service name)
/// apply as the OpenTelemetry SDK reads them.
#[cfg(feature = "otel")]
fn otel_provider() -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use anyhow::Context;
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("setting up the OTLP exporter")?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("ucan-gateway");
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(Some(provider))
}
