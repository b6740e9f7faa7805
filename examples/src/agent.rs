//! What an operator and an agent do against the issuer and the gateway, over plain HTTP: the
//! calls the demo narrates and the end-to-end tests assert on.

use anyhow::{Context, bail};
use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The grant the demo and the end-to-end tests give the expense agent: `submit_expense` up to
/// 500 in travel or meal, `list_expenses`, and one re-delegation.
pub fn expense_grant() -> Value {
    json!([{
        "type": "mcp_tools",
        "tools": ["expenses/submit_expense", "expenses/list_expenses"],
        "limits": [
            {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500},
            {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]}
        ],
        "max_depth": 1
    }])
}

/// An agent's OAuth client credentials.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
}

/// An OAuth error body (RFC 6749 §5.2) with its HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {error}: {description}")]
pub struct OAuthError {
    /// HTTP status.
    pub status: u16,
    /// `error`.
    pub error: String,
    /// `error_description`.
    pub description: String,
}

/// Talks to the issuer as an operator (admin API) and as agents (token endpoint).
#[derive(Debug, Clone)]
pub struct IssuerClient {
    base: String,
    admin_token: String,
    http: reqwest::Client,
}

impl IssuerClient {
    /// A client for the issuer at `base`.
    pub fn new(base: &str, admin_token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            admin_token: admin_token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn admin(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("{path}: {status} {body}");
        }
        Ok(body)
    }

    /// Registers an agent.
    pub async fn register_agent(&self, id: &str, name: &str) -> anyhow::Result<ClientCredentials> {
        let body = self
            .admin("/admin/clients", json!({"client_id": id, "name": name}))
            .await?;
        Ok(ClientCredentials {
            id: id.to_owned(),
            secret: body["client_secret"]
                .as_str()
                .context("no client_secret")?
                .to_owned(),
        })
    }

    /// Records a grant from `user` to `agent`; returns its id.
    pub async fn grant(
        &self,
        user: &str,
        agent: &str,
        resource: &str,
        authorization_details: Value,
    ) -> anyhow::Result<String> {
        let body = self
            .admin(
                "/admin/grants",
                json!({"subject": user, "client_id": agent, "resources": [resource],
                       "authorization_details": authorization_details, "expires_in": 3600}),
            )
            .await?;
        Ok(body["id"].as_str().context("no grant id")?.to_owned())
    }

    /// The user's token for a grant (the subject of the first exchange).
    pub async fn subject_token(&self, grant_id: &str) -> anyhow::Result<String> {
        let body = self
            .admin(
                &format!("/admin/grants/{grant_id}/subject-token"),
                json!({}),
            )
            .await?;
        Ok(body["subject_token"]
            .as_str()
            .context("no subject_token")?
            .to_owned())
    }

    /// The whole first delegation at once: a grant from `user` to `agent` for `resource`, the
    /// user's subject token, the agent's client token, and the exchange. Returns the grant id
    /// and the agent's delegation token.
    pub async fn delegation(
        &self,
        agent: &ClientCredentials,
        user: &str,
        resource: &str,
        details: Value,
    ) -> anyhow::Result<(String, String)> {
        let grant_id = self.grant(user, &agent.id, resource, details).await?;
        let subject = self.subject_token(&grant_id).await?;
        let actor = self.client_token(agent).await?;
        let token = self
            .exchange(agent, &subject, &actor, resource, None)
            .await??;
        Ok((grant_id, token))
    }

    /// Revokes a token, grant, agent, user or session (operator, admin API); returns the
    /// revocation's sequence number.
    pub async fn revoke(&self, kind: &str, value: &str) -> anyhow::Result<i64> {
        let body = self
            .admin("/admin/revocations", json!({"kind": kind, "value": value}))
            .await?;
        body["seq"].as_i64().context("no seq")
    }

    async fn token(
        &self,
        client: &ClientCredentials,
        form: &[(&str, &str)],
    ) -> anyhow::Result<Result<String, OAuthError>> {
        Ok(match self.token_response(client, form, None).await? {
            Ok(body) => Ok(body["access_token"]
                .as_str()
                .context("no access_token")?
                .to_owned()),
            Err(e) => Err(e),
        })
    }

    /// `POST /token` as `client` with `form` and, for a token bound to the agent's key, a
    /// DPoP proof made for this endpoint ([`Self::token_url`]); the whole answer.
    pub async fn token_response(
        &self,
        client: &ClientCredentials,
        form: &[(&str, &str)],
        dpop_proof: Option<&str>,
    ) -> anyhow::Result<Result<Value, OAuthError>> {
        let mut request = self
            .http
            .post(self.token_url())
            .basic_auth(&client.id, Some(&client.secret))
            .form(form);
        if let Some(proof) = dpop_proof {
            request = request.header("dpop", proof);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await?;
        if status == 200 {
            return Ok(Ok(body));
        }
        Ok(Err(OAuthError {
            status,
            error: body["error"].as_str().unwrap_or_default().to_owned(),
            description: body["error_description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    /// The token endpoint's URL, which DPoP proofs for it name.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }

    /// The agent's own client token (its `actor_token`), by `client_credentials`.
    pub async fn client_token(&self, client: &ClientCredentials) -> anyhow::Result<String> {
        Ok(self
            .token(client, &[("grant_type", "client_credentials")])
            .await??)
    }

    /// RFC 8693 exchange made by `client`: `subject_token` on behalf of the agent named by
    /// `actor_token`, for `resource`, optionally narrowed by `authorization_details`.
    pub async fn exchange(
        &self,
        client: &ClientCredentials,
        subject_token: &str,
        actor_token: &str,
        resource: &str,
        authorization_details: Option<&Value>,
    ) -> anyhow::Result<Result<String, OAuthError>> {
        let details = authorization_details.map(Value::to_string);
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject_token),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", actor_token),
            ("actor_token_type", ACCESS_TOKEN),
            ("resource", resource),
        ];
        if let Some(details) = &details {
            form.push(("authorization_details", details));
        }
        self.token(client, &form).await
    }
}

/// An MCP session through the gateway, authenticated with a delegation token.
pub type McpSession = RunningService<rmcp::RoleClient, ClientConfig>;

/// Connects an rmcp client to `url` with `Authorization: Bearer {token}`.
pub async fn connect(url: &str, token: &str) -> anyhow::Result<McpSession> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).auth_header(token.to_owned()),
    );
    Ok(ClientConfig::default().serve(transport).await?)
}

/// `tools/call` of `tool` with `arguments` (an object): the text of the first content block, or
/// the JSON-RPC error. A transport failure is a test failure, not an answer.
pub async fn call(
    session: &McpSession,
    tool: &str,
    arguments: Value,
) -> Result<String, rmcp::model::ErrorData> {
    let arguments = arguments
        .as_object()
        .cloned()
        .expect("tool arguments are an object");
    let params = rmcp::model::CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
    match session.call_tool(params).await {
        Ok(result) => Ok(result.content[0]
            .as_text()
            .expect("a text answer")
            .text
            .clone()),
        Err(rmcp::ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("transport failure instead of a JSON-RPC answer: {other}"),
    }
}

/// An MCP session spoken by hand over HTTP: for tests that must choose every byte of a body.
#[derive(Debug, Clone)]
pub struct RawSession {
    url: String,
    token: String,
    id: String,
    http: reqwest::Client,
}

impl RawSession {
    /// `initialize` (2025-11-25) and `notifications/initialized` at `url`, with `token`.
    pub async fn open(url: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "raw-session", "version": "1"}}});
        let response = http
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
            .await?
            .error_for_status()?;
        let id = response
            .headers()
            .get("mcp-session-id")
            .context("initialize opened no session")?
            .to_str()?
            .to_owned();
        response.bytes().await?;
        let session = Self {
            url: url.to_owned(),
            token: token.to_owned(),
            id,
            http,
        };
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        session
            .post(serde_json::to_vec(&initialized)?)
            .await?
            .error_for_status()?;
        Ok(session)
    }

    /// The bearer token the session was opened with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The session id the gateway gave.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// POSTs `body` as it is, in the session.
    pub async fn post(&self, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &self.id)
            .body(body)
            .send()
            .await
    }
}

/// The JSON-RPC message of an answer, whether sent as JSON or as one event of a stream.
pub async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let text = response.text().await?;
    let data = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .rfind(|data| !data.is_empty())
        .unwrap_or(&text);
    Ok(serde_json::from_str(data)?)
}

/// An agent's own key for DPoP (RFC 9449): it makes the proofs that bind the agent's tokens
/// to the key and go with every request.
#[derive(Debug)]
pub struct DpopKey {
    key: portcullis_policy::SigningKey,
}

impl DpopKey {
    /// A new P-256 key (ES256, what most DPoP clients use).
    pub fn generate() -> Self {
        Self::generate_as(portcullis_policy::Algorithm::Es256)
    }

    /// A new key for `algorithm` (ES256 or EdDSA).
    pub fn generate_as(algorithm: portcullis_policy::Algorithm) -> Self {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source is available");
        let key = match algorithm {
            portcullis_policy::Algorithm::EdDsa => {
                portcullis_policy::SigningKey::ed25519_from_seed("agent", &secret)
            }
            _ => portcullis_policy::SigningKey::es256_from_secret("agent", &secret),
        };
        Self {
            key: key.expect("32 random bytes are a key"),
        }
    }

    /// A fresh proof for `POST url`, carrying the hash of `token` when one goes with it.
    pub fn proof(&self, url: &str, token: Option<&str>) -> String {
        self.proof_with_nonce(url, token, None)
    }

    /// As [`proof`](Self::proof), carrying the server's `nonce` (its `DPoP-Nonce`).
    pub fn proof_with_nonce(&self, url: &str, token: Option<&str>, nonce: Option<&str>) -> String {
        let issued_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        portcullis_policy::create_proof(
            &self.key,
            &portcullis_policy::ProofRequest {
                method: "POST",
                url,
                access_token: token,
                nonce,
                jti: &crate::random_secret(),
                issued_at,
            },
        )
    }

    /// The agent's client token, bound to this key.
    pub async fn client_token(
        &self,
        issuer: &IssuerClient,
        agent: &ClientCredentials,
    ) -> anyhow::Result<Result<Value, OAuthError>> {
        let proof = self.proof(&issuer.token_url(), None);
        issuer
            .token_response(agent, &[("grant_type", "client_credentials")], Some(&proof))
            .await
    }
}
