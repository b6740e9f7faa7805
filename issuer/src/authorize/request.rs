//! `GET /authorize`'s parameters, validated in the order that decides how errors travel.
//!
//! The client and its `redirect_uri` come first: until both are known good, errors are shown on
//! a page. Everything after is refused to the client's [`ReturnTo`]. Only PKCE with S256, one
//! RFC 8707 `resource`, and tools asked for by RFC 9396 `authorization_details` or
//! `mcp:tools:` scopes are accepted.

use portcullis_policy::{ConstraintError, Constraints};

use crate::authorize::error::{AuthorizeError, Refusal};
use crate::authorize::redirect::ReturnTo;
use crate::client_auth::Params;
use crate::clients::Client;
use crate::{AppState, client_metadata, grants};

/// A valid authorization request, before anyone has answered it.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizationRequest {
    /// The client asking.
    pub(crate) client_id: String,
    /// Where the answer goes.
    pub(crate) return_to: ReturnTo,
    /// The PKCE S256 challenge the code's redeemer must answer.
    pub(crate) code_challenge: String,
    /// The one resource asked for.
    pub(crate) resource: String,
    /// The tools and terms asked for; `None` asks for whatever the person allows.
    pub(crate) requested: Option<Constraints>,
}

/// Validates `GET /authorize`'s query: the client asking, and its request.
pub(crate) async fn validate(
    state: &AppState,
    query: &str,
) -> Result<(Client, AuthorizationRequest), AuthorizeError> {
    let params = Params::from_query(query).map_err(AuthorizeError::MalformedParams)?;
    let client_id = params
        .get("client_id")
        .ok_or(AuthorizeError::MissingClientId)?;
    let client = find_client(state, client_id).await?;
    let redirect_uri = match (params.get("redirect_uri"), &client.redirect_uris[..]) {
        (Some(uri), registered) if registered.iter().any(|r| r == uri) => uri.to_owned(),
        (None, [only]) => only.clone(),
        (Some(_), _) => return Err(AuthorizeError::UnregisteredRedirectUri),
        (None, _) => return Err(AuthorizeError::MissingRedirectUri),
    };
    let return_to = ReturnTo {
        redirect_uri,
        state: params.get("state").map(str::to_owned),
    };
    let refuse = |reason| AuthorizeError::refused(&return_to, reason);
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => return Err(refuse(Refusal::UnsupportedResponseType)),
        None => return Err(refuse(Refusal::MissingResponseType)),
    }
    match params.get("code_challenge_method") {
        Some("S256") => {}
        Some(_) => return Err(refuse(Refusal::UnsupportedChallengeMethod)),
        None => return Err(refuse(Refusal::MissingPkce)),
    }
    let code_challenge = params
        .get("code_challenge")
        .filter(|c| valid_code_challenge(c))
        .ok_or_else(|| refuse(Refusal::InvalidCodeChallenge))?
        .to_owned();
    let resource = match params.all("resource").collect::<Vec<_>>()[..] {
        [one] if grants::valid_resource(one) => one.to_owned(),
        [_] => return Err(refuse(Refusal::InvalidResource)),
        [] => return Err(refuse(Refusal::MissingResource)),
        _ => return Err(refuse(Refusal::SeveralResources)),
    };
    let requested = match params.get("authorization_details") {
        Some(text) => {
            let details: Vec<serde_json::Value> =
                portcullis_policy::strict_json::from_slice_to(text.as_bytes())
                    .map_err(|e| refuse(Refusal::MalformedAuthorizationDetails(e)))?;
            Some(
                Constraints::from_authorization_details(&details)
                    .map_err(|e| refuse(Refusal::InvalidAuthorizationDetails(e)))?,
            )
        }
        None => params
            .get("scope")
            .map(requested_from_scope)
            .transpose()
            .map_err(|e| refuse(Refusal::InvalidScope(e)))?
            .flatten(),
    };
    let request = AuthorizationRequest {
        client_id: client.client_id.clone(),
        return_to,
        code_challenge,
        resource,
        requested,
    };
    Ok((client, request))
}

async fn find_client(state: &AppState, client_id: &str) -> Result<Client, AuthorizeError> {
    let client = if client_metadata::is_metadata_url(client_id) {
        client_metadata::resolve(state, client_id)
            .await
            .map_err(|e| match e {
                client_metadata::MetadataError::Db(e) => e.into(),
                source => AuthorizeError::ClientMetadata {
                    client_id: client_id.to_owned(),
                    source,
                },
            })?
    } else {
        crate::clients::get_enabled(&state.db, client_id)
            .await?
            .ok_or_else(|| AuthorizeError::UnknownClient(client_id.to_owned()))?
    };
    if client.redirect_uris.is_empty() {
        return Err(AuthorizeError::NoRedirectUris(client_id.to_owned()));
    }
    Ok(client)
}

fn valid_code_challenge(challenge: &str) -> bool {
    // base64url(SHA-256) is 43 characters; RFC 7636 §4.2 allows 43-128 unreserved characters.
    (43..=128).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Scopes of the form `mcp:tools:<pattern>` ask for those tools; other scopes ask for nothing
/// (the resource server's own scopes mean nothing here: authority is the `mcp_tools` detail).
fn requested_from_scope(scope: &str) -> Result<Option<Constraints>, ConstraintError> {
    let tools: Vec<&str> = scope
        .split(' ')
        .filter_map(|s| s.strip_prefix("mcp:tools:"))
        .collect();
    if tools.is_empty() {
        return Ok(None);
    }
    let detail = serde_json::json!([{"type": portcullis_policy::constraint::MCP_TOOLS_TYPE, "tools": tools}]);
    Constraints::from_authorization_details(detail.as_array().expect("an array")).map(Some)
}
