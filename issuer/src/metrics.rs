//! Prometheus metrics of the issuer, rendered at `/metrics`. Label values are fixed codes.

use std::sync::LazyLock;

use portcullis_policy::revocation::RevocationKind;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

use crate::token::grant_type::GrantType;

struct Metrics {
    registry: Registry,
    token_requests: IntCounterVec,
    revocations: IntCounterVec,
    approvals: IntCounterVec,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let token_requests = IntCounterVec::new(
        Opts::new(
            "portcullis_issuer_token_requests_total",
            "Token endpoint requests by grant type and result (ok or the OAuth error code).",
        ),
        &["grant_type", "result"],
    )
    .expect("valid metric");
    let revocations = IntCounterVec::new(
        Opts::new(
            "portcullis_issuer_revocations_total",
            "Revocations committed, by kind.",
        ),
        &["kind"],
    )
    .expect("valid metric");
    let approvals = IntCounterVec::new(
        Opts::new(
            "portcullis_issuer_approvals_total",
            "Approval requests and answers, by outcome (requested, first_approval, approved, \
             denied, spent, expired, void).",
        ),
        &["outcome"],
    )
    .expect("valid metric");
    registry
        .register(Box::new(approvals.clone()))
        .expect("unique metric");
    registry
        .register(Box::new(token_requests.clone()))
        .expect("unique metric");
    registry
        .register(Box::new(revocations.clone()))
        .expect("unique metric");
    Metrics {
        registry,
        token_requests,
        revocations,
        approvals,
    }
});

/// Counts a token endpoint request; a missing or unsupported grant type counts as `other`.
pub fn token_request(grant_type: Option<GrantType>, result: &'static str) {
    let grant_type = grant_type.map_or("other", GrantType::metric_label);
    METRICS
        .token_requests
        .with_label_values(&[grant_type, result])
        .inc();
}

/// Counts a committed revocation.
pub fn revocation(kind: RevocationKind) {
    METRICS
        .revocations
        .with_label_values(&[kind.as_str()])
        .inc();
}

/// Counts a step of an approval.
pub fn approval(outcome: &'static str) {
    METRICS.approvals.with_label_values(&[outcome]).inc();
}

/// The Prometheus text exposition.
pub fn render() -> Vec<u8> {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&METRICS.registry.gather(), &mut out)
        .expect("encoding into memory cannot fail");
    out
}
