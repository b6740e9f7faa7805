//! `audit:`: where the decision log is kept and whether, where and with which token it is
//! shipped to the issuer.

use super::raw::RawAudit;
use super::{ConfigError, invalid, url, valid_name};
use crate::decision_log::AuditConfig;
use crate::secret::{self, Source};

/// Where the ingest token comes from when no file is named.
const INGEST_TOKEN_ENV: &str = "PORTCULLIS_GATEWAY_AUDIT_INGEST_TOKEN";

/// Validates the section; shipping (the default) needs the issuer's ingest token.
pub(super) fn audit(raw: RawAudit, issuer_url: &str) -> Result<AuditConfig, ConfigError> {
    let gateway_id = raw.gateway_id.unwrap_or_else(|| "gateway".into());
    if !valid_name(&gateway_id) {
        return Err(invalid(
            "audit.gateway_id",
            "use 1-64 characters of [A-Za-z0-9_.-]",
        ));
    }
    let ship_to = if raw.ship {
        let url = raw
            .ingest_url
            .unwrap_or_else(|| format!("{issuer_url}/audit/decisions"));
        url::parse("audit.ingest_url", &url)?;
        let token = match &raw.ingest_token_file {
            Some(path) => secret::read(Source::File(path))
                .map_err(|e| invalid("audit.ingest_token_file", e.to_string()))?,
            None => secret::read(Source::Env(INGEST_TOKEN_ENV)).map_err(|_| {
                invalid(
                    "audit.ingest_token_file",
                    format!(
                        "shipping needs the issuer's ingest token (this file, or \
                         {INGEST_TOKEN_ENV}); or set audit.ship: false"
                    ),
                )
            })?,
        };
        Some((url, token))
    } else {
        None
    };
    Ok(AuditConfig {
        dir: raw.dir,
        gateway_id,
        ship_to,
    })
}
