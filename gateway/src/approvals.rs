//! Step-up approvals, asked of the issuer.
//!
//! A call the policy sends to a person ([`ApprovalNeeded`]) is put to the issuer's
//! `POST /approvals` with the gateway token (the one that ships decisions). One round trip
//! answers everything: an approval of exactly this call (grant, user, actor chain, upstream,
//! tool, digest of the canonical arguments) is spent there atomically and the call goes on;
//! otherwise the agent is told where its person approves, or that they refused. Asking on
//! every such call, rather than following a stream of decisions, keeps the issuer the only
//! place an approval can be spent, so replicas never both spend one.

use std::time::Duration;

use portcullis_policy::approval::{Answer, CallToApprove};
use portcullis_policy::{ApprovalNeeded, Claims};
use serde_json::Value;

use crate::config::ApprovalsConfig;

/// How long the issuer has to answer before the call is refused as unavailable.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why the issuer could not be asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApprovalError {
    /// The token names no grant, so no approval can be tied to one.
    #[error("the token names no grant to approve under")]
    NoGrant,
    /// No approvals endpoint is configured (the gateway ships no decisions).
    #[error("approvals are not configured (they need audit shipping's gateway token)")]
    NotConfigured,
    /// The issuer did not answer, or answered with an error.
    #[error("the issuer could not be asked: {0}")]
    Unreachable(String),
}

/// The client of the issuer's approvals endpoint.
#[derive(Debug)]
pub(crate) struct Approvals {
    config: Option<ApprovalsConfig>,
    http: reqwest::Client,
}

impl Approvals {
    /// A client of `config`'s endpoint; without one every approval is unavailable.
    pub(crate) fn new(config: Option<ApprovalsConfig>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .expect("a reqwest client with static settings builds");
        Self { config, http }
    }

    /// Asks about the call `needed` describes, made with `claims` at `upstream`.
    pub(crate) async fn ask(
        &self,
        needed: &ApprovalNeeded,
        claims: &Claims,
        upstream: &str,
        arguments: &Value,
    ) -> Result<Answer, ApprovalError> {
        let config = self.config.as_ref().ok_or(ApprovalError::NotConfigured)?;
        let grant_id = needed.grant_id().ok_or(ApprovalError::NoGrant)?;
        let body = CallToApprove {
            grant_id: grant_id.to_owned(),
            token_id: needed.token_id().to_owned(),
            sub: claims.subject.clone(),
            act: claims
                .actors
                .iter()
                .flat_map(|chain| chain.actors())
                .map(|actor| actor.sub.clone())
                .collect(),
            upstream: upstream.to_owned(),
            tool: needed.tool().to_owned(),
            arguments: arguments.clone(),
            requirement: needed.requirement().clone(),
            gateway: config.gateway_id.clone(),
        };
        let unreachable = |e: reqwest::Error| ApprovalError::Unreachable(e.to_string());
        let response = self
            .http
            .post(&config.url)
            .bearer_auth(config.token.expose())
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if !status.is_success() {
            let detail = response.text().await.unwrap_or_default();
            return Err(ApprovalError::Unreachable(format!("{status}: {detail}")));
        }
        response.json().await.map_err(unreachable)
    }
}
