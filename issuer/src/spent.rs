//! Values that may be used once: a client assertion's `jti` (RFC 7523), a DPoP proof's `jti`
//! (RFC 9449). Each is kept, hashed and namespaced by what it is, until it could no longer be
//! presented; inserting it is the test, so two replicas racing on one value cannot both win.
//! The table is `client_assertions`, named for its first use.

use crate::AppState;
use crate::oauth_error::OAuthError;
use crate::secret::hash_secret;

/// Spends `value` (within `namespace`) until `expires_at`; `false` if it was spent before.
pub(crate) async fn spend(
    state: &AppState,
    namespace: &str,
    value: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, OAuthError> {
    let hash = hash_secret(&format!("{namespace}\n{value}"));
    Ok(state
        .db
        .write(|tx| {
            let hash = hash.clone();
            Box::pin(async move {
                sqlx::query("DELETE FROM client_assertions WHERE expires_at < $1")
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                Ok(sqlx::query(
                    "INSERT INTO client_assertions (jti_hash, expires_at) VALUES ($1, $2)
                     ON CONFLICT (jti_hash) DO NOTHING",
                )
                .bind(hash)
                .bind(expires_at)
                .execute(&mut **tx)
                .await?
                .rows_affected()
                    == 1)
            })
        })
        .await?)
}
