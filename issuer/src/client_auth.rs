//! Reading OAuth form requests and authenticating the client that sends them, shared by the
//! token, revocation and introspection endpoints.
//!
//! Each parameter may appear once (RFC 6749 §3.2), except `resource` and `audience` (RFC 8693)
//! and the consent form's `tool` checkboxes. A client authenticates with exactly one method:
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt`, or `none` for a public
//! client; a missing or wrong credential is always `invalid_client`.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::AppState;
use crate::client_assertion::JWT_BEARER;
use crate::clients::{self, AuthMethod, Client};
use crate::oauth_error::OAuthError;

/// Form parameters, each present at most once (RFC 6749 §3.2), `resource` possibly repeated.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub(crate) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(OAuthError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded".into(),
            ));
        }
        Self::from_urlencoded(body)
    }

    /// Parameters of a query string (`GET /authorize`).
    pub(crate) fn from_query(query: &str) -> Result<Self, OAuthError> {
        Self::from_urlencoded(query.as_bytes())
    }

    fn from_urlencoded(bytes: &[u8]) -> Result<Self, OAuthError> {
        const REPEATABLE: [&str; 3] = ["resource", "audience", "tool"];
        let pairs: Vec<(String, String)> = form_urlencoded::parse(bytes).into_owned().collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !REPEATABLE.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(OAuthError::InvalidRequest(format!(
                    "parameter {name} is repeated"
                )));
            }
        }
        Ok(Self { pairs })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
    }

    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Authenticates the client by the one method it registered: a secret (`client_secret_basic`
/// or `client_secret_post`), a signed assertion (`private_key_jwt`), or nothing at all for a
/// public client (`none`), which then only names itself with `client_id`.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Client, OAuthError> {
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(value) => Some(parse_basic(value.as_bytes()).ok_or_else(|| {
            OAuthError::InvalidClient("malformed Basic authorization header".into())
        })?),
        None => None,
    };
    let post = params.get("client_secret");
    let assertion = match (
        params.get("client_assertion_type"),
        params.get("client_assertion"),
    ) {
        (Some(JWT_BEARER), Some(assertion)) => Some(assertion),
        (None, None) => None,
        (Some(JWT_BEARER), None) => {
            return Err(OAuthError::InvalidRequest(
                "client_assertion is missing".into(),
            ));
        }
        (Some(other), _) => {
            return Err(OAuthError::InvalidClient(format!(
                "client_assertion_type {other} is not supported"
            )));
        }
        (None, Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "client_assertion needs client_assertion_type".into(),
            ));
        }
    };
    let client_id = params.get("client_id");
    let client = match (basic, post, assertion) {
        (Some((id, secret)), None, None) => {
            if client_id.is_some_and(|claimed| claimed != id) {
                return Err(OAuthError::InvalidRequest(
                    "client_id disagrees with the authenticated client".into(),
                ));
            }
            by_secret(state, &id, &secret).await?
        }
        (None, Some(secret), None) => {
            let id = client_id.ok_or_else(|| {
                OAuthError::InvalidClient("client_secret without client_id".into())
            })?;
            by_secret(state, id, secret).await?
        }
        (None, None, Some(assertion)) => {
            crate::client_assertion::authenticate(state, client_id, assertion).await?
        }
        (None, None, None) => {
            let id = client_id.ok_or_else(|| {
                OAuthError::InvalidClient("client authentication is required".into())
            })?;
            // Only a client registered as public may skip authentication.
            crate::clients::get_enabled(&state.db, id)
                .await?
                .filter(|c| c.auth_method == AuthMethod::None)
                .ok_or_else(|| {
                    OAuthError::InvalidClient("client authentication is required".into())
                })?
        }
        _ => {
            return Err(OAuthError::InvalidRequest(
                "use one client authentication method, not two".into(),
            ));
        }
    };
    Ok(client)
}

async fn by_secret(state: &AppState, client_id: &str, secret: &str) -> Result<Client, OAuthError> {
    clients::authenticate(&state.db, client_id, secret)
        .await?
        .filter(|c| c.auth_method == AuthMethod::ClientSecret)
        .ok_or_else(|| OAuthError::InvalidClient("unknown client or wrong secret".into()))
}

fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}
