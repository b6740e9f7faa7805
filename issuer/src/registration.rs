//! RFC 7591 dynamic client registration: `POST /register`.
//!
//! Anyone can register, which is why a registered client gets nothing by itself: it can only
//! ask people for consent, and the consent page shows its name and where the answer goes.
//! Operators who only want known clients switch registration off
//! (`--no-dynamic-registration`). Registered clients use the authorization-code flow only: the
//! `grant_types` a client registers must be code-flow grants, are stored with it, and are all
//! the token endpoint serves it ([`GrantTypes`]). A `jwks_uri` is refused (it would make the
//! issuer fetch a URL of the client's choosing at every authentication), inline `jwks` is
//! accepted.

use portcullis_policy::key::JwkSet;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clients::{self, AuthMethod, Client, Origin};
use crate::oauth_error::OAuthError;
use crate::secret::{hash_secret, random_token};
use crate::token::grant_type::GrantTypes;
use crate::{AppState, client_metadata, now};

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    jwks: Option<JwkSet>,
    #[serde(default)]
    jwks_uri: Option<String>,
    // Other RFC 7591 and OIDC metadata (client_uri, logo_uri, scope, contacts, tos_uri,
    // policy_uri, software_id, software_version, application_type) is accepted and ignored.
}

fn metadata_error(description: impl Into<String>) -> OAuthError {
    OAuthError::InvalidClientMetadata(description.into())
}

/// Handles `POST /register`; answers 201 with the client's id (and secret, if it uses one).
pub(crate) async fn register(state: &AppState, body: &[u8]) -> Result<Value, OAuthError> {
    if !state.config.dynamic_registration {
        return Err(OAuthError::NotFound(
            "dynamic client registration is switched off".into(),
        ));
    }
    let request: Request = portcullis_policy::strict_json::from_slice_to(body)
        .map_err(|e| metadata_error(format!("body: {e}")))?;
    if request.redirect_uris.is_empty() {
        return Err(OAuthError::InvalidRedirectUri(
            "redirect_uris is required".into(),
        ));
    }
    if let Some(bad) = request
        .redirect_uris
        .iter()
        .find(|u| !client_metadata::valid_redirect_uri(u))
    {
        return Err(OAuthError::InvalidRedirectUri(format!(
            "{bad}: use https, or http to a loopback host, without a fragment"
        )));
    }
    let grant_types = GrantTypes::self_registered(request.grant_types.as_deref())
        .map_err(|e| metadata_error(e.to_string()))?;
    if request
        .response_types
        .as_ref()
        .is_some_and(|types| types.iter().any(|t| t != "code"))
    {
        return Err(metadata_error("only the code response type is supported"));
    }
    if request.jwks_uri.is_some() {
        return Err(metadata_error(
            "jwks_uri is not supported; register jwks inline",
        ));
    }
    let method_name = request
        .token_endpoint_auth_method
        .as_deref()
        .unwrap_or("client_secret_basic");
    let auth_method = AuthMethod::from_name(method_name).ok_or_else(|| {
        metadata_error(format!(
            "token_endpoint_auth_method {method_name} is not supported"
        ))
    })?;
    match (&auth_method, &request.jwks) {
        (AuthMethod::PrivateKeyJwt, None) => {
            return Err(metadata_error("private_key_jwt needs jwks"));
        }
        (AuthMethod::PrivateKeyJwt, Some(jwks)) => {
            portcullis_policy::KeySet::from_jwks(jwks)
                .map_err(|e| metadata_error(format!("jwks: {e}")))?;
        }
        (_, Some(_)) => return Err(metadata_error("jwks is only for private_key_jwt")),
        _ => {}
    }
    let name = request
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("unnamed client");
    if name.len() > 200 {
        return Err(metadata_error("client_name is longer than 200 characters"));
    }
    let now = now();
    let client = Client {
        client_id: clients::generated_id("dyn"),
        name: name.to_owned(),
        created_at: now,
        redirect_uris: request.redirect_uris,
        auth_method,
        jwks: request.jwks,
        origin: Origin::Dynamic,
        fetched_at: None,
        grant_types,
    };
    let secret =
        (auth_method == AuthMethod::ClientSecret).then(|| format!("pcs_{}", random_token(32)));
    let secret_hash = secret.as_deref().map(hash_secret).unwrap_or_default();
    if !clients::insert(&state.db, &client, &secret_hash, false).await? {
        return Err(OAuthError::Server("a generated client id collided".into()));
    }
    let mut answer = json!({
        "client_id": client.client_id,
        "client_id_issued_at": now,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": method_name,
    });
    if let Some(secret) = secret {
        answer["client_secret"] = json!(secret);
        answer["client_secret_expires_at"] = json!(0);
    }
    if let Some(jwks) = &client.jwks {
        answer["jwks"] = json!(jwks);
    }
    Ok(answer)
}
