//! Reading OAuth form requests and authenticating the client that sends them, shared by the
//! token, revocation and introspection endpoints.
//!
//! Each parameter may appear once (RFC 6749 §3.2), except `resource` and `audience` (RFC 8693).
//! A client authenticates with exactly one method, `client_secret_basic` or
//! `client_secret_post`; a missing or wrong secret is always `invalid_client`.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::AppState;
use crate::clients::{self, Client};
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
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if name != "resource" && name != "audience" && pairs[..i].iter().any(|(n, _)| n == name)
            {
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

/// `client_secret_basic` or `client_secret_post`; exactly one of them.
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
    let post = params
        .get("client_secret")
        .map(|secret| (params.get("client_id"), secret));
    let (client_id, secret) = match (basic, post) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::InvalidRequest(
                "use one client authentication method, not two".into(),
            ));
        }
        (Some(pair), None) => pair,
        (None, Some((Some(id), secret))) => (id.to_owned(), secret.to_owned()),
        (None, Some((None, _))) | (None, None) => {
            return Err(OAuthError::InvalidClient(
                "client authentication is required".into(),
            ));
        }
    };
    if params.get("client_id").is_some_and(|id| id != client_id) {
        return Err(OAuthError::InvalidRequest(
            "client_id disagrees with the authenticated client".into(),
        ));
    }
    clients::authenticate(&state.db, &client_id, &secret)
        .await?
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
