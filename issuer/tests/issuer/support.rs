//! Fixtures: an issuer per backend, and the requests operators and agents make.
#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use portcullis_issuer::secret::random_token;
use portcullis_issuer::{Issuer, IssuerConfig, StorageOptions, app};
use portcullis_policy::{KeySet, Verifier};
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

pub(crate) const ISSUER: &str = "http://issuer.test";
pub(crate) const RESOURCE: &str = "http://gw.test/mcp/expenses";
pub(crate) const ADMIN: &str = "admin-token-for-tests-only";
pub(crate) const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

pub(crate) struct Backend {
    pub(crate) name: &'static str,
    pub(crate) storage: StorageOptions,
    _dir: TempDir,
}

pub(crate) async fn backends() -> Vec<Backend> {
    let dir = TempDir::new().unwrap();
    let mut out = vec![Backend {
        name: "sqlite",
        storage: StorageOptions {
            data_dir: dir.path().to_owned(),
            database_url: None,
            key_encryption_secret: None,
        },
        _dir: dir,
    }];
    if let Ok(base) = std::env::var("PORTCULLIS_TEST_POSTGRES_URL") {
        let schema = format!("t_{}", random_token(9).to_lowercase().replace('-', "_"));
        let db = portcullis_issuer::db::Database::connect(&base)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(db.pool())
            .await
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let dir = TempDir::new().unwrap();
        out.push(Backend {
            name: "postgres",
            storage: StorageOptions {
                data_dir: dir.path().to_owned(),
                database_url: Some(format!("{base}{sep}options=-c%20search_path%3D{schema}")),
                key_encryption_secret: Some("a-test-key-encryption-secret-of-enough-length".into()),
            },
            _dir: dir,
        });
    }
    out
}

pub(crate) async fn open_issuer(backend: &Backend) -> Issuer {
    open_issuer_with(backend, |_| {}).await
}

/// An issuer with the admin token set, configured further by `tweak` (as `serve`'s flags would).
pub(crate) async fn open_issuer_with(
    backend: &Backend,
    tweak: impl FnOnce(&mut IssuerConfig),
) -> Issuer {
    let mut config = IssuerConfig::new(ISSUER);
    config.admin_token = Some(ADMIN.into());
    tweak(&mut config);
    Issuer::open(config, &backend.storage).await.unwrap()
}

pub(crate) async fn open(backend: &Backend) -> Router {
    app(open_issuer(backend).await.state().clone())
}

pub(crate) async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub(crate) async fn admin(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

pub(crate) async fn token(
    app: &Router,
    client: &(String, String),
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    token_form(app, "/token", client, form).await
}

pub(crate) async fn register(app: &Router, id: &str) -> (String, String) {
    let (status, body) = admin(app, "/admin/clients", json!({"client_id": id, "name": id})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        id.to_owned(),
        body["client_secret"].as_str().unwrap().to_owned(),
    )
}

pub(crate) fn grant_details() -> Value {
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

/// A registered agent with a grant from alice, and her subject token for it.
pub(crate) struct World {
    pub(crate) app: Router,
    pub(crate) agent: (String, String),
    pub(crate) grant_id: String,
    pub(crate) subject_token: String,
}

pub(crate) async fn world(backend: &Backend) -> World {
    world_in(open(backend).await).await
}

/// The same world in an issuer opened by the caller.
pub(crate) async fn world_in(app: Router) -> World {
    let agent = register(&app, "expense-agent").await;
    let (status, grant) = admin(
        &app,
        "/admin/grants",
        json!({"subject": "alice", "client_id": "expense-agent", "resources": [RESOURCE],
               "authorization_details": grant_details(), "expires_in": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let grant_id = grant["id"].as_str().unwrap().to_owned();
    let (status, minted) = admin(
        &app,
        &format!("/admin/grants/{grant_id}/subject-token"),
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    World {
        app,
        agent,
        grant_id,
        subject_token: minted["subject_token"].as_str().unwrap().to_owned(),
    }
}

pub(crate) async fn client_token(app: &Router, client: &(String, String)) -> String {
    let (status, body) = token(app, client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn exchange(
    w: &World,
    client: &(String, String),
    subject: &str,
    actor: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS),
        ("actor_token", actor),
        ("actor_token_type", ACCESS),
    ];
    if !extra.iter().any(|(k, _)| *k == "resource") {
        form.push(("resource", RESOURCE));
    }
    form.extend_from_slice(extra);
    token(&w.app, client, &form).await
}

pub(crate) async fn delegation(w: &World) -> String {
    let actor = client_token(&w.app, &w.agent).await;
    let (status, body) = exchange(w, &w.agent, &w.subject_token, &actor, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn verifier(app: &Router) -> Verifier {
    let (_, jwks) = send(
        app,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    Verifier::new(
        ISSUER,
        KeySet::from_jwks(&serde_json::from_value(jwks).unwrap()).unwrap(),
    )
}

pub(crate) fn decode(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub(crate) fn assert_error(
    backend: &Backend,
    got: (StatusCode, Value),
    status: StatusCode,
    code: &str,
) {
    assert_eq!(got.0, status, "[{}] {}", backend.name, got.1);
    assert_eq!(got.1["error"], code, "[{}] {}", backend.name, got.1);
}

pub(crate) async fn revoke(app: &Router, kind: &str, value: &str) -> (StatusCode, Value) {
    admin(
        app,
        "/admin/revocations",
        json!({"kind": kind, "value": value, "reason": "test"}),
    )
    .await
}

pub(crate) async fn introspect(
    app: &Router,
    client: &(String, String),
    token_to_check: &str,
) -> Value {
    let (status, body) = token_form(app, "/introspect", client, &[("token", token_to_check)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// POSTs a form to `path` with Basic client authentication.
pub(crate) async fn token_form(
    app: &Router,
    path: &str,
    client: &(String, String),
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let basic = STANDARD.encode(format!("{}:{}", client.0, client.1));
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let request = Request::post(path)
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    send(app, request).await
}

/// A client of `GET /revocations/stream`, reading SSE events off the response body.
pub(crate) struct EventStream {
    body: Body,
    buffer: String,
}

impl EventStream {
    pub(crate) async fn open(app: &Router, last_event_id: Option<i64>) -> Self {
        let mut request = Request::get("/revocations/stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next revocation event (`id`, entry), or `None` if none arrives within 5 seconds.
    pub(crate) async fn next(&mut self) -> Option<(i64, Value)> {
        let (id, data) = self.next_of("revocation").await?;
        Some((id?.parse().unwrap(), data))
    }

    /// The next `freezes` event's patterns, or `None` if none arrives within 5 seconds.
    pub(crate) async fn next_freezes(&mut self) -> Option<Value> {
        Some(self.next_of("freezes").await?.1["freezes"].clone())
    }

    /// The next event of type `kind` (its `id`, if any, and data), skipping the others.
    async fn next_of(&mut self, kind: &str) -> Option<(Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                };
                if let (Some(event), Some(data)) = (field("event:"), field("data:"))
                    && event == kind
                {
                    return Some((field("id:"), serde_json::from_str(&data).unwrap()));
                }
                continue; // a keep-alive comment, or another kind
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}

/// Runs the `portcullis-issuer` binary on this backend's storage, as an operator would from a
/// shell with no `PORTCULLIS_*` variables set; returns its stdout, failing the test if it fails.
pub(crate) async fn cli(backend: &Backend, args: &[&str]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis-issuer"));
    command
        .args(args)
        .arg("--data-dir")
        .arg(&backend.storage.data_dir)
        .arg("--issuer-url")
        .arg(ISSUER)
        .env_clear();
    if let Some(url) = &backend.storage.database_url {
        command.arg("--database-url").arg(url);
    }
    if let Some(secret) = &backend.storage.key_encryption_secret {
        command.env("PORTCULLIS_KEY_ENCRYPTION_SECRET", secret);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "[{}] portcullis-issuer {args:?}: {stderr}",
        backend.name
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The value of `portcullis_issuer_token_requests_total` for one grant type and result.
pub(crate) async fn token_requests(app: &Router, grant_type: &str, result: &str) -> u64 {
    let response = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let series = format!(
        "portcullis_issuer_token_requests_total{{grant_type=\"{grant_type}\",result=\"{result}\"}} "
    );
    String::from_utf8_lossy(&bytes)
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.trim().parse().unwrap())
}
