//! Where the gateway asks the issuer about calls that need a person's approval: derived from
//! the `audit:` section, since both use the issuer's gateway token.

use crate::decision_log::AuditConfig;
use crate::secret::Secret;

/// Where approvals are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// The issuer's `/approvals` endpoint.
    pub url: String,
    /// The issuer's `/upstream-token` endpoint, for upstreams with `downstream_auth: oauth`.
    pub upstream_token_url: String,
    /// The gateway token.
    pub token: Secret,
    /// This gateway's name, recorded when it spends an approval.
    pub gateway_id: String,
}

/// The approvals endpoint of `issuer_url`, when decisions are shipped there (with the token
/// that ships them); `None` otherwise, and calls that need approval are refused.
pub(super) fn approvals(audit: Option<&AuditConfig>, issuer_url: &str) -> Option<ApprovalsConfig> {
    let audit = audit?;
    let (_, token) = audit.ship_to.as_ref()?;
    Some(ApprovalsConfig {
        url: format!("{issuer_url}/approvals"),
        upstream_token_url: format!("{issuer_url}/upstream-token"),
        token: token.clone(),
        gateway_id: audit.gateway_id.clone(),
    })
}
