//! Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document): a client whose
//! `client_id` is an https URL describes itself in the JSON document at that URL.
//!
//! The issuer fetches the document through [`crate::safe_fetch`] (the URL is the client's
//! choice, so it is treated as hostile), checks that it names itself (`client_id` equal to the
//! URL, byte for byte), has a `client_name` and `redirect_uris`, and authenticates as a public
//! client or with `private_key_jwt` (a shared secret in a public document would be no secret),
//! and asks only for code-flow `grant_types`, as a registered client must ([`GrantTypes`]: the
//! token endpoint serves it those alone).
//! The result is stored as a client of origin `metadata` and refetched once it is older than
//! [`REFRESH_AFTER`], so a client can change its redirect URIs and an attacker who once
//! controlled the URL does not keep the registration forever.

use portcullis_policy::key::JwkSet;
use serde::Deserialize;

use crate::AppState;
use crate::clients::{self, AuthMethod, Client, Origin};
use crate::safe_fetch::{self, FetchError};
use crate::token::grant_type::GrantTypes;

/// How long a fetched document is trusted before it is fetched again, seconds.
pub const REFRESH_AFTER: i64 = 300;

/// Why a metadata document was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The URL is not a valid client id URL.
    #[error(
        "a client id URL must be https with a path, without fragment, credentials or dot segments"
    )]
    InvalidUrl,
    /// Fetching failed or was refused.
    #[error("fetching its metadata document: {0}")]
    Fetch(#[from] FetchError),
    /// The document is not acceptable.
    #[error("its metadata document is invalid: {0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Whether a `client_id` names a metadata document rather than a registered client.
pub fn is_metadata_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    client_name: String,
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    jwks: Option<JwkSet>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
}

fn valid_url(client_id: &str) -> Option<url::Url> {
    let url = url::Url::parse(client_id).ok()?;
    let path_ok = url.path() != "/"
        && !url.path().is_empty()
        && !url
            .path()
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    // The parsed form must be the very string given: no normalisation may hide a difference.
    (url.as_str() == client_id
        && path_ok
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none())
    .then_some(url)
}

/// A redirect URI a client may register: https, or http to a loopback host (native apps, RFC
/// 8252 §7.3), absolute and without a fragment.
pub fn valid_redirect_uri(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    url.fragment().is_none()
        && url.username().is_empty()
        && (url.scheme() == "https" || (url.scheme() == "http" && loopback))
}

/// The client `client_id` describes, from the store when fresh, fetched otherwise.
pub async fn resolve(state: &AppState, client_id: &str) -> Result<Client, MetadataError> {
    let now = crate::now();
    let url = valid_url(client_id)
        .filter(|u| u.scheme() == "https" || state.config.allow_loopback_fetch)
        .ok_or(MetadataError::InvalidUrl)?;
    // Checked on every use, cached or not: where the URL points may have changed.
    safe_fetch::check(&url, state.config.allow_loopback_fetch).await?;
    let stored = clients::get(&state.db, client_id).await?;
    if let Some(client) = &stored {
        if client.origin != Origin::Metadata {
            return Err(MetadataError::Invalid(
                "the id is registered otherwise".into(),
            ));
        }
        if client.fetched_at.is_some_and(|at| now - at < REFRESH_AFTER)
            && crate::clients::get_enabled(&state.db, client_id)
                .await?
                .is_some()
        {
            return Ok(client.clone());
        }
    }
    let body = safe_fetch::get(&url, state.config.allow_loopback_fetch).await?;
    let document: Document = portcullis_policy::strict_json::from_slice_to(&body)
        .map_err(|e| MetadataError::Invalid(e.to_string()))?;
    if document.client_id != client_id {
        return Err(MetadataError::Invalid(format!(
            "its client_id {:?} is not the URL it was fetched from",
            document.client_id
        )));
    }
    let name = document.client_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(MetadataError::Invalid(
            "client_name must be 1-200 characters".into(),
        ));
    }
    if document.redirect_uris.is_empty()
        || !document.redirect_uris.iter().all(|u| valid_redirect_uri(u))
    {
        return Err(MetadataError::Invalid(
            "redirect_uris must be https, or http to a loopback host, without fragments".into(),
        ));
    }
    if document.jwks_uri.is_some() {
        return Err(MetadataError::Invalid(
            "jwks_uri is not supported; publish jwks in the document".into(),
        ));
    }
    let auth_method = match document.token_endpoint_auth_method.as_deref() {
        None | Some("none") => AuthMethod::None,
        Some("private_key_jwt") if document.jwks.is_some() => AuthMethod::PrivateKeyJwt,
        Some("private_key_jwt") => {
            return Err(MetadataError::Invalid("private_key_jwt needs jwks".into()));
        }
        Some(other) => {
            return Err(MetadataError::Invalid(format!(
                "token_endpoint_auth_method {other} is not allowed for a metadata document client"
            )));
        }
    };
    if let Some(jwks) = &document.jwks {
        portcullis_policy::KeySet::from_jwks(jwks)
            .map_err(|e| MetadataError::Invalid(format!("jwks: {e}")))?;
    }
    let grant_types = GrantTypes::self_registered(document.grant_types.as_deref())
        .map_err(|e| MetadataError::Invalid(e.to_string()))?;
    let client = Client {
        client_id: client_id.to_owned(),
        name: name.to_owned(),
        created_at: stored.as_ref().map_or(now, |c| c.created_at),
        redirect_uris: document.redirect_uris,
        auth_method,
        jwks: document.jwks,
        origin: Origin::Metadata,
        fetched_at: Some(now),
        grant_types,
    };
    clients::insert(&state.db, &client, "", true).await?;
    // A disabled client stays disabled, whatever its document says.
    clients::get_enabled(&state.db, client_id)
        .await?
        .ok_or_else(|| MetadataError::Invalid("the client is disabled".into()))
}
