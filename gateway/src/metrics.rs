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
    revocations: IntCounterVec,
    propagation: prometheus::Histogram,
    killed: IntCounter,
    staleness: prometheus::IntGauge,
    decisions_logged: prometheus::IntGauge,
    decisions_unshipped: prometheus::IntGauge,
    body_buffer: prometheus::IntGauge,
    stdio_starts: IntCounterVec,
    tool_changes: IntCounterVec,
    reloads: IntCounterVec,
    upstream_refused: IntCounterVec,
    shared_store_fallbacks: IntCounterVec,
    approvals: IntCounterVec,
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
    let revocations = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_revocations_applied_total",
            "Revocations applied, by kind.",
        ),
        &["kind"],
    )
    .expect("valid metric");
    let propagation = prometheus::Histogram::with_opts(
        HistogramOpts::new(
            "portcullis_gateway_revocation_lag_seconds",
            "From the issuer committing a revocation to this gateway applying it (whole seconds).",
        )
        .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
    )
    .expect("valid metric");
    let killed = IntCounter::new(
        "portcullis_gateway_live_work_killed_total",
        "Live requests and streams ended by a revocation.",
    )
    .expect("valid metric");
    let staleness = prometheus::IntGauge::new(
        "portcullis_gateway_revocation_staleness_seconds",
        "Age of the gateway's revocation knowledge.",
    )
    .expect("valid metric");
    let decisions_logged = prometheus::IntGauge::new(
        "portcullis_gateway_decisions_logged",
        "Sequence number of the last decision written to the local audit log.",
    )
    .expect("valid metric");
    let decisions_unshipped = prometheus::IntGauge::new(
        "portcullis_gateway_decisions_unshipped",
        "Decisions in the local audit log the issuer has not acknowledged yet.",
    )
    .expect("valid metric");
    let body_buffer = prometheus::IntGauge::new(
        "portcullis_gateway_body_buffer_bytes",
        "Bytes of large request bodies (over 64 KiB) held now, to be judged and forwarded.",
    )
    .expect("valid metric");
    let stdio_starts = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_stdio_starts_total",
            "Processes started for stdio upstreams (a pooled one started again after it exited \
             counts again), by upstream.",
        ),
        &["upstream"],
    )
    .expect("valid metric");
    let tool_changes = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_tool_changes_total",
            "Changed tool definitions held back until an operator approves them.",
        ),
        &["upstream"],
    )
    .expect("valid metric");
    let reloads = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_config_reloads_total",
            "Configuration reloads, by outcome (applied, invalid).",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    let upstream_refused = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_upstream_answers_refused_total",
            "Upstream answers the gateway would not pass on, by upstream and reason \
             (credential_refused: the upstream refused the gateway's own credential; \
             unreadable_encoding: a list or stream in a content coding the gateway cannot read; \
             session_id_too_long: a session id longer than the gateway carries).",
        ),
        &["upstream", "reason"],
    )
    .expect("valid metric");
    let shared_store_fallbacks = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_shared_store_fallbacks_total",
            "Operations done by this replica alone because the shared store (shared_state, \
             lenient mode) could not answer, by operation (rate: a rate-capped call counted \
             per replica; session: a session looked up, opened or ended by this replica alone).",
        ),
        &["operation"],
    )
    .expect("valid metric");
    let approvals = IntCounterVec::new(
        Opts::new(
            "portcullis_gateway_approvals_total",
            "Calls that needed a person's approval, by upstream and the issuer's answer \
             (spent: approved, and spent on this call; pending; denied; void: the grant was \
             revoked; unavailable: the issuer could not be asked).",
        ),
        &["upstream", "outcome"],
    )
    .expect("valid metric");
    for collector in [
        Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
        Box::new(approvals.clone()),
        Box::new(upstream_refused.clone()),
        Box::new(shared_store_fallbacks.clone()),
        Box::new(reloads.clone()),
        Box::new(tool_changes.clone()),
        Box::new(decisions_logged.clone()),
        Box::new(decisions_unshipped.clone()),
        Box::new(body_buffer.clone()),
        Box::new(stdio_starts.clone()),
        Box::new(duration.clone()),
        Box::new(decisions.clone()),
        Box::new(tools_hidden.clone()),
        Box::new(jwks_refreshes.clone()),
        Box::new(revocations.clone()),
        Box::new(propagation.clone()),
        Box::new(killed.clone()),
        Box::new(staleness.clone()),
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
        revocations,
        propagation,
        killed,
        staleness,
        decisions_logged,
        decisions_unshipped,
        body_buffer,
        stdio_starts,
        tool_changes,
        reloads,
        upstream_refused,
        shared_store_fallbacks,
        approvals,
    }
});

/// Counts the issuer's answer about a call that needed approval.
pub(crate) fn approval(upstream: &str, outcome: &'static str) {
    METRICS
        .approvals
        .with_label_values(&[upstream, outcome])
        .inc();
}

/// Counts a configuration reload (`applied` or `invalid`).
pub(crate) fn config_reload(outcome: &'static str) {
    METRICS.reloads.with_label_values(&[outcome]).inc();
}

/// Counts a changed tool definition held back.
pub(crate) fn tool_changed(upstream: &str) {
    METRICS.tool_changes.with_label_values(&[upstream]).inc();
}

/// Records the head of the local decision log.
pub(crate) fn decisions_logged(seq: i64) {
    METRICS.decisions_logged.set(seq);
}

/// Records how far shipping lags behind the log.
pub(crate) fn decisions_unshipped(count: i64) {
    METRICS.decisions_unshipped.set(count);
}

/// Adds `bytes` (negative: releases) to the large request bodies held.
pub(crate) fn body_buffer(bytes: i64) {
    METRICS.body_buffer.add(bytes);
}

/// Counts a stdio upstream's process started.
pub(crate) fn stdio_started(upstream: &str) {
    METRICS.stdio_starts.with_label_values(&[upstream]).inc();
}

/// Folds a JSON-RPC method to a bounded label.
pub(crate) fn method_label(method: Option<&str>) -> &'static str {
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
pub(crate) fn request_finished(
    upstream: &str,
    method: &'static str,
    outcome: &'static str,
    seconds: f64,
) {
    let m = &*METRICS;
    m.requests
        .with_label_values(&[upstream, method, outcome])
        .inc();
    m.duration
        .with_label_values(&[upstream, method])
        .observe(seconds);
}

/// Counts a `tools/call` decision.
pub(crate) fn decision(upstream: &str, decision: &'static str, reason: &'static str) {
    METRICS
        .decisions
        .with_label_values(&[upstream, decision, reason])
        .inc();
}

/// Counts an upstream answer the gateway refused to pass on.
pub(crate) fn upstream_answer_refused(upstream: &str, reason: &'static str) {
    METRICS
        .upstream_refused
        .with_label_values(&[upstream, reason])
        .inc();
}

/// Counts an operation done by this replica alone because the shared store did not answer.
pub(crate) fn shared_store_fallback(operation: &'static str) {
    METRICS
        .shared_store_fallbacks
        .with_label_values(&[operation])
        .inc();
}

/// How many operations fell back to this replica so far.
#[cfg(test)]
pub(crate) fn shared_store_fallbacks(operation: &'static str) -> u64 {
    METRICS
        .shared_store_fallbacks
        .with_label_values(&[operation])
        .get()
}

/// Counts tools hidden from a list.
pub(crate) fn tools_hidden(upstream: &str, count: usize) {
    METRICS
        .tools_hidden
        .with_label_values(&[upstream])
        .inc_by(count as u64);
}

/// Counts a JWKS refresh.
pub(crate) fn jwks_refreshed() {
    METRICS.jwks_refreshes.inc();
}

/// Counts an applied revocation and how long it took to arrive.
pub(crate) fn revocation_applied(kind: &str, lag_seconds: i64) {
    METRICS.revocations.with_label_values(&[kind]).inc();
    METRICS.propagation.observe(lag_seconds.max(0) as f64);
}

/// Counts live work ended by revocations.
pub(crate) fn live_work_killed(count: usize) {
    METRICS.killed.inc_by(count as u64);
}

/// Records the age of the revocation knowledge.
pub(crate) fn revocation_staleness(seconds: i64) {
    METRICS.staleness.set(seconds);
}

/// The Prometheus text exposition of every metric.
pub(crate) fn render() -> Vec<u8> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("encoding gathered metrics into memory cannot fail");
    out
}
