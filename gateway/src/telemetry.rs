//! OpenTelemetry traces: a span per request (`mcp.request`), with children for verifying the
//! token (`verify`), judging the message (`judge`), minting the upstream's credential (`mint`)
//! and the upstream call (`upstream`), exported over OTLP/HTTP when the standard variables
//! name a receiver (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
//! `OTEL_SERVICE_NAME`, `OTEL_BSP_*` and the rest are read as the SDK reads them).
//!
//! A request's W3C `traceparent` (and `tracestate`) continues the agent's trace, and the
//! upstream gets the `upstream` span's, so one trace runs from the agent through the gateway
//! into the MCP server. The trace id is written into each decision the request makes (the
//! decision log, and the issuer's audit chain after shipping). Without a receiver the spans
//! are plain `tracing` spans, and no trace id is recorded.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Exports spans while it lives; dropping it flushes what is buffered.
#[derive(Debug)]
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!("flushing traces: {e}");
        }
    }
}

/// Whether the environment names an OTLP receiver for traces (read once).
pub fn configured() -> bool {
    static CONFIGURED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CONFIGURED.get_or_init(|| {
        [
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
    })
}

/// The steps of a request that get a span of their own.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// The whole request (the root, a server span).
    Request,
    /// Verifying the token.
    Verify,
    /// Judging the message.
    Judge,
    /// Minting the upstream's credential.
    Mint,
    /// The upstream call, from its request header to the end of its response (a client span).
    Upstream,
}

/// A span for `step` under the current span, or none at all when nothing exports spans: a
/// request then costs no span.
pub(crate) fn span(step: Step) -> tracing::Span {
    if !configured() {
        return tracing::Span::none();
    }
    match step {
        Step::Request => tracing::info_span!("mcp.request", otel.kind = "server"),
        Step::Verify => tracing::info_span!("verify"),
        Step::Judge => tracing::info_span!("judge"),
        Step::Mint => tracing::info_span!("mint"),
        Step::Upstream => tracing::info_span!("upstream", otel.kind = "client"),
    }
}

/// The `tracing` layer that exports spans over OTLP/HTTP, and the exporter's guard; `None`
/// when no receiver is configured. Build it outside an async runtime (the exporter runs on a
/// thread of its own).
pub fn layer<S>() -> Result<Option<(impl tracing_subscriber::Layer<S>, Exporting)>, String>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    if !configured() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP exporter: {e}"))?;
    let service =
        std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "portcullis-gateway".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let tracer = provider.tracer("portcullis-gateway");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Exporting(provider))))
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Continues the trace the request's `traceparent` names, if any, in `span`.
pub(crate) fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if configured() && headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        // A span that is not exported has no context to join: nothing to do.
        let _ = span.set_parent(parent);
    }
}

struct Fields(HashMap<String, String>);

impl Injector for Fields {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// The W3C headers (`traceparent`, `tracestate`) that carry `span` to the next hop; none for a
/// span that is not exported.
pub(crate) fn propagation_headers(span: &tracing::Span) -> Vec<(String, String)> {
    if !configured() {
        return Vec::new();
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut fields = Fields(HashMap::new());
    TraceContextPropagator::new().inject_context(&context, &mut fields);
    fields.0.into_iter().collect()
}

/// The trace id of the span now current, when it is exported.
pub(crate) fn current_trace_id() -> Option<String> {
    if !configured() {
        return None;
    }
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
