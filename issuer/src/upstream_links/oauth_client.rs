//! The issuer as an OAuth client of an upstream's own authorization server: finding it from
//! the upstream's RFC 9728 metadata, reading its RFC 8414 metadata, registering with it
//! (RFC 7591), and the token requests (authorization code with PKCE, refresh), each naming the
//! upstream as the resource (RFC 8707).
//!
//! Discovery and registration run when an operator registers the upstream; token requests
//! when a person links their account and when a gateway needs a fresh access token. Every
//! request has a deadline and follows no redirects.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

/// The longest any request to the upstream or its authorization server may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest metadata document or token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why talking to the upstream's authorization server failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamOAuthError {
    /// It could not be reached, or answered with something that is not the document asked for.
    #[error("{0}")]
    Unreachable(String),
    /// Its metadata says something the issuer cannot use (or does not trust).
    #[error("{0}")]
    Metadata(String),
    /// It refused the request with an OAuth error (`invalid_grant` and the like).
    #[error("the authorization server refused: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// The OAuth error code.
        error: String,
        /// Its description, if given.
        description: Option<String>,
    },
}

/// What the upstream's metadata and its authorization server's say, with the issuer's client.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The upstream's own resource identifier (its RFC 9728 `resource`).
    pub upstream_resource: String,
    /// The authorization server's issuer identifier.
    pub authorization_server: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// Where clients register, if it lets them.
    pub registration_endpoint: Option<String>,
    /// `offline_access`, when the server lists it (some issue refresh tokens only for it).
    pub offline_access: bool,
}

/// The issuer's client at an authorization server.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    /// `None` for a public client (PKCE only).
    pub secret: Option<String>,
}

/// A token response.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    /// Seconds; a server that does not say is taken to mean an hour.
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// A client that follows no redirects and gives up after [`TIMEOUT`].
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client with static settings builds")
}

/// `https://host/.well-known/{name}{path}`: a well-known document of `url`'s (RFC 8615 as RFC
/// 8414 §3.1 and RFC 9728 §3.1 place it, before the path).
fn well_known(url: &str, name: &str) -> Result<String, UpstreamOAuthError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| UpstreamOAuthError::Metadata(format!("{url:?} is not a URL: {e}")))?;
    let path = parsed.path().trim_end_matches('/');
    Ok(format!(
        "{}/.well-known/{name}{path}",
        parsed.origin().ascii_serialization()
    ))
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
) -> Result<serde_json::Value, UpstreamOAuthError> {
    let unreachable = |e: String| UpstreamOAuthError::Unreachable(format!("{url}: {e}"));
    let response = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !response.status().is_success() {
        return Err(unreachable(format!("HTTP {}", response.status())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if body.len() > MAX_RESPONSE {
        return Err(unreachable("the document is too large".into()));
    }
    serde_json::from_slice(&body).map_err(|e| unreachable(format!("not JSON: {e}")))
}

/// Finds the upstream's authorization server from its protected resource metadata, and reads
/// that server's metadata. The server's `issuer` must be the one the upstream named.
pub async fn discover(
    http: &reqwest::Client,
    upstream_url: &str,
) -> Result<Discovered, UpstreamOAuthError> {
    let resource = get_json(http, &well_known(upstream_url, "oauth-protected-resource")?).await?;
    let text = |value: &serde_json::Value, field: &str| {
        value[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| UpstreamOAuthError::Metadata(format!("the metadata has no {field}")))
    };
    let upstream_resource = text(&resource, "resource")?;
    let authorization_server = resource["authorization_servers"][0]
        .as_str()
        .ok_or_else(|| {
            UpstreamOAuthError::Metadata("the upstream names no authorization server".into())
        })?
        .to_owned();
    let metadata = match get_json(
        http,
        &well_known(&authorization_server, "oauth-authorization-server")?,
    )
    .await
    {
        Ok(metadata) => metadata,
        Err(_) => {
            get_json(
                http,
                &well_known(&authorization_server, "openid-configuration")?,
            )
            .await?
        }
    };
    if metadata["issuer"].as_str() != Some(authorization_server.as_str()) {
        return Err(UpstreamOAuthError::Metadata(format!(
            "the authorization server's metadata names issuer {}, not {authorization_server}",
            metadata["issuer"]
        )));
    }
    let pkce = metadata["code_challenge_methods_supported"]
        .as_array()
        .is_some_and(|methods| methods.iter().any(|m| m == "S256"));
    if !pkce {
        return Err(UpstreamOAuthError::Metadata(
            "the authorization server does not offer PKCE with S256".into(),
        ));
    }
    Ok(Discovered {
        upstream_resource,
        authorization_endpoint: text(&metadata, "authorization_endpoint")?,
        token_endpoint: text(&metadata, "token_endpoint")?,
        registration_endpoint: metadata["registration_endpoint"]
            .as_str()
            .map(str::to_owned),
        offline_access: metadata["scopes_supported"]
            .as_array()
            .is_some_and(|scopes| scopes.iter().any(|s| s == "offline_access")),
        authorization_server,
    })
}

/// Registers the issuer as a confidential client that is sent back to `redirect_uri`.
pub async fn register(
    http: &reqwest::Client,
    registration_endpoint: &str,
    redirect_uri: &str,
) -> Result<Client, UpstreamOAuthError> {
    let unreachable =
        |e: String| UpstreamOAuthError::Unreachable(format!("{registration_endpoint}: {e}"));
    let response = http
        .post(registration_endpoint)
        .json(&json!({
            "client_name": "Portcullis",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let body = read_json(response).await?;
    let id = body["client_id"]
        .as_str()
        .ok_or_else(|| UpstreamOAuthError::Metadata("the registration gave no client_id".into()))?;
    Ok(Client {
        id: id.to_owned(),
        secret: body["client_secret"].as_str().map(str::to_owned),
    })
}

/// A token request: `form` and the client's authentication.
pub async fn token(
    http: &reqwest::Client,
    endpoint: &str,
    client: &Client,
    form: &[(&str, &str)],
) -> Result<Tokens, UpstreamOAuthError> {
    let mut request = http.post(endpoint);
    let mut form = form.to_vec();
    match &client.secret {
        Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
        None => form.push(("client_id", &client.id)),
    }
    let response = request
        .form(&form)
        .send()
        .await
        .map_err(|e| UpstreamOAuthError::Unreachable(format!("{endpoint}: {e}")))?;
    let body = read_json(response).await?;
    serde_json::from_value(body)
        .map_err(|e| UpstreamOAuthError::Metadata(format!("an unreadable token response: {e}")))
}

/// A JSON answer; an OAuth error body as [`UpstreamOAuthError::Refused`].
async fn read_json(response: reqwest::Response) -> Result<serde_json::Value, UpstreamOAuthError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| UpstreamOAuthError::Unreachable(e.to_string()))?;
    if body.len() > MAX_RESPONSE {
        return Err(UpstreamOAuthError::Unreachable(
            "the answer is too large".into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        UpstreamOAuthError::Unreachable(format!("HTTP {status} with a body that is not JSON"))
    })?;
    if let Some(error) = value["error"].as_str() {
        return Err(UpstreamOAuthError::Refused {
            error: error.to_owned(),
            description: value["error_description"].as_str().map(str::to_owned),
        });
    }
    if !status.is_success() {
        return Err(UpstreamOAuthError::Unreachable(format!("HTTP {status}")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_documents_go_before_the_path() {
        assert_eq!(
            well_known("http://127.0.0.1:8/mcp", "oauth-protected-resource").unwrap(),
            "http://127.0.0.1:8/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            well_known("https://as.example/", "oauth-authorization-server").unwrap(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }
}
