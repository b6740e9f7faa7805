//! Prometheus metrics, rendered on the admin listener's `/metrics`.
//!
//! Labels are bounded: upstream names come from the configuration, methods are folded to the
//! few MCP methods the gateway treats specially (anything else is `other`), outcomes and deny
//! reasons are fixed codes. Nothing an agent sends becomes a label value.

use std::sync::LazyLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    decisions: IntCounterVec,
    tools_hidden: IntCounterVec,
    jwks_refreshes: IntCounter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let requests = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_requests_total",
            "Requests by upstream, MCP method and outcome.",
        ),
        &["upstream", "method", "outcome"],
    )
    .expect("valid metric");
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "portcullis_gateway_request_duration_seconds",
            "Time from request to the end of the response, by upstream and MCP method.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
        ]),
        &["upstream", "method"],
    )
    .expect("valid metric");
    let decisions = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_decisions_total",
            "tools/call decisions by upstream and reason.",
        ),
        &["upstream", "decision", "reason"],
    )
    .expect("valid metric");
    let tools_hidden = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_tools_hidden_total",
            "Tools removed from tools/list results.",
        ),
        &["upstream"],
    )
    .expect("valid metric");
    let jwks_refreshes = IntCounter::new(
        "portcullis_gateway_jwks_refreshes_total",
        "Successful refreshes of the issuer's JWKS.",
    )
    .expect("valid metric");
    for collector in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(duration.clone()),
        Box::new(decisions.clone()),
        Box::new(tools_hidden.clone()),
        Box::new(jwks_refreshes.clone()),
    ] {
        registry
            .register(collector)
            .expect("metric names are unique");
    }
    Metrics {
        registry,
        requests,
        duration,
        decisions,
        tools_hidden,
        jwks_refreshes,
    }
});

/// Folds a JSON-RPC method to a bounded label.
pub fn method_label(method: Option<&str>) -> &'static str {
    match method {
        Some("tools/call") => "tools/call",
        Some("tools/list") => "tools/list",
        Some("initialize") => "initialize",
        Some(m) if m.starts_with("notifications/") => "notification",
        Some(_) => "other",
        None => "none",
    }
}

/// Counts a finished request.
pub fn request_finished(upstream: &str, method: &'static str, outcome: &'static str, seconds: f64) {
    let m = &*METRICS;
    m.requests
        .with_label_values(&[upstream, method, outcome])
        .inc();
    m.duration
        .with_label_values(&[upstream, method])
        .observe(seconds);
}

/// Counts a `tools/call` decision.
pub fn decision(upstream: &str, decision: &'static str, reason: &'static str) {
    METRICS
        .decisions
        .with_label_values(&[upstream, decision, reason])
        .inc();
}

/// Counts tools hidden from a list.
pub fn tools_hidden(upstream: &str, count: usize) {
    METRICS
        .tools_hidden
        .with_label_values(&[upstream])
        .inc_by(count as u64);
}

/// Counts a JWKS refresh.
pub fn jwks_refreshed() {
    METRICS.jwks_refreshes.inc();
}

/// The Prometheus text exposition of every metric.
pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("encoding gathered metrics into memory cannot fail");
    out
}
