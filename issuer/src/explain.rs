//! A token explained in plain words, for operators (`portcullis-issuer show`).
//!
//! The token is verified against this issuer's keys first, even if it has expired (an expired
//! token is still worth explaining, and proving authentic): who acts for whom through which
//! chain, where, whether it is still valid or revoked, and its terms.

use portcullis_policy::VerifyError;

use crate::{AppState, revocation};

/// Why a token cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// It is not one of this issuer's tokens.
    #[error("this token is not one of this issuer's: {0}")]
    NotOurs(#[from] VerifyError),
    /// The revocation check failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The lines that explain `token`.
pub async fn explain(state: &AppState, token: &str, now: i64) -> Result<Vec<String>, ExplainError> {
    let verified = state.keys().dangerous_verify_even_if_expired(token, now)?;
    let claims = verified.claims();
    let mut lines = Vec::new();
    let chain: Vec<&str> = claims
        .actors
        .iter()
        .flat_map(|c| c.actors())
        .map(|a| a.sub.as_str())
        .collect();
    lines.push(match chain.as_slice() {
        [] if claims.grant_id.is_some() => format!(
            "{}'s own token for grant {}",
            claims.subject,
            claims.grant_id.as_deref().unwrap_or("")
        ),
        [] => format!("client token of {}", claims.subject),
        [current] => {
            format!("{current} acting for {}", claims.subject)
        }
        [current, earlier @ ..] => format!(
            "{current} acting for {} (delegated through {})",
            claims.subject,
            earlier.join(" ← ")
        ),
    });
    lines.push(format!("for {}", claims.audience.join(", ")));
    let status = if claims.expires_at <= now {
        "EXPIRED".to_owned()
    } else if let Some(entry) = revocation::covering(&state.db, claims, now).await? {
        format!(
            "REVOKED (revocation {}, {})",
            entry.seq,
            entry.kind.as_str()
        )
    } else {
        format!("valid for {} more seconds", claims.expires_at - now)
    };
    lines.push(format!("{status}; token id {}", claims.token_id));
    if let Some(constraints) = &claims.constraints {
        lines.extend(constraints.describe().into_iter().map(|l| format!("  {l}")));
    }
    Ok(lines)
}
