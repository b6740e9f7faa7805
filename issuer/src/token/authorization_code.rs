//! Authorization codes: made at consent, redeemed once at the token endpoint.
//!
//! A code is stored as a hash with the client, `redirect_uri`, PKCE challenge and resource of
//! its request. Redemption marks it used in the same statement that finds it, so two
//! concurrent redemptions cannot both succeed; a second redemption is treated as theft (RFC
//! 6749 §4.1.2, OAuth 2.1 §4.1.3): the grant behind the code is revoked, which ends every
//! token and refresh token made from it. A redeemed code starts the grant's refresh family
//! ([`crate::token::refresh_token`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

use crate::client_auth::Params;
use crate::clients::Client;
use crate::grants::Grant;
use crate::oauth_error::OAuthError;
use crate::secret::{hash_secret, random_token};
use crate::token::mint::TokenResponse;
use crate::token::refresh_token;
use crate::{AppState, now};

/// How long an authorization code lives (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub(crate) const CODE_TTL: i64 = 60;

/// Stores a code for `grant` and returns it.
pub(crate) async fn create(
    state: &AppState,
    grant: &Grant,
    redirect_uri: &str,
    code_challenge: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let code = random_token(32);
    let row = (
        hash_secret(&code),
        grant.id.clone(),
        grant.client_id.clone(),
        redirect_uri.to_owned(),
        code_challenge.to_owned(),
        grant.resources[0].clone(),
    );
    state
        .db
        .write(|tx| {
            let (hash, grant_id, client_id, redirect_uri, challenge, resource) = row.clone();
            Box::pin(async move {
                sqlx::query("DELETE FROM authorization_codes WHERE expires_at < $1")
                    .bind(now - 3600)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO authorization_codes
                       (code_hash, grant_id, client_id, redirect_uri, code_challenge, resource,
                        expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(hash)
                .bind(grant_id)
                .bind(client_id)
                .bind(redirect_uri)
                .bind(challenge)
                .bind(resource)
                .bind(now + CODE_TTL)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await?;
    Ok(code)
}

/// Whether `verifier` is the PKCE verifier of `challenge` (S256, RFC 7636 §4.6).
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The `authorization_code` grant.
pub(crate) async fn redeem(
    state: &AppState,
    client: &Client,
    params: &Params,
) -> Result<TokenResponse, OAuthError> {
    let code = params.require("code")?;
    let redirect_uri = params.require("redirect_uri")?;
    let verifier = params
        .get("code_verifier")
        .ok_or_else(|| OAuthError::InvalidRequest("code_verifier is required (PKCE)".into()))?;
    if !valid_verifier(verifier) {
        return Err(OAuthError::InvalidRequest(
            "code_verifier must be 43-128 characters of [A-Za-z0-9-._~]".into(),
        ));
    }
    let now = now();
    let hash = hash_secret(code);
    // Claim the code first: whatever follows, it is spent.
    let claimed = state
        .db
        .write(|tx| {
            let hash = hash.clone();
            Box::pin(async move {
                let claimed = sqlx::query(
                    "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
                )
                .bind(now)
                .bind(&hash)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                Ok(claimed == 1)
            })
        })
        .await?;
    let row = sqlx::query(
        "SELECT grant_id, client_id, redirect_uri, code_challenge, resource, expires_at
         FROM authorization_codes WHERE code_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(|| OAuthError::InvalidGrant("unknown authorization code".into()))?;
    let grant_id: String = row.try_get("grant_id")?;
    let code_client: String = row.try_get("client_id")?;
    if code_client != client.client_id {
        return Err(OAuthError::InvalidGrant(
            "the code was issued to another client".into(),
        ));
    }
    if !claimed {
        return Err(refresh_token::revoke_family(state, &grant_id, "authorization code").await?);
    }
    if now > row.try_get::<i64, _>("expires_at")? {
        return Err(OAuthError::InvalidGrant("the code has expired".into()));
    }
    if redirect_uri != row.try_get::<String, _>("redirect_uri")? {
        return Err(OAuthError::InvalidGrant(
            "redirect_uri differs from the authorization request's".into(),
        ));
    }
    if !pkce_matches(verifier, row.try_get("code_challenge")?) {
        return Err(OAuthError::InvalidGrant(
            "code_verifier does not match the code_challenge".into(),
        ));
    }
    let resource: String = row.try_get("resource")?;
    if params.all("resource").any(|r| r != resource) {
        return Err(OAuthError::InvalidTarget(format!(
            "the code was issued for {resource} only"
        )));
    }
    refresh_token::issue_with_access_token(state, client, &grant_id, &resource, now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_vector_from_rfc_7636() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_verifier(verifier));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl",
            challenge
        ));
    }

    #[test]
    fn verifiers_outside_the_rfc_alphabet_or_length_are_refused() {
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}+", "a".repeat(43))));
    }
}
