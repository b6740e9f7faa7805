//! The authorization-code flow, driven like a browser: sign-in and consent pages, PKCE,
//! one-time codes, refresh rotation with reuse detection, dynamic registration, client
//! metadata documents fetched without SSRF, and `private_key_jwt`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use portcullis_issuer::{Issuer, IssuerConfig, app, users};
use portcullis_policy::{ActorRule, Constraints, Expected, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::support::*;

const CALLBACK: &str = "http://127.0.0.1:3000/callback";
const PASSWORD: &str = "correct horse battery staple";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An issuer with alice in its user store, configured by `tweak`.
async fn issuer_with(backend: &Backend, tweak: impl FnOnce(&mut IssuerConfig)) -> Router {
    let mut config = IssuerConfig::new(ISSUER);
    config.admin_token = Some(ADMIN.into());
    tweak(&mut config);
    let issuer = Issuer::open(config, &backend.storage).await.unwrap();
    let allowance =
        Constraints::from_authorization_details(grant_details().as_array().unwrap()).unwrap();
    // A second issuer on the same database finds her already there.
    match users::create(
        &issuer.state().db,
        "alice",
        PASSWORD,
        vec![RESOURCE.into()],
        allowance,
        portcullis_issuer::now(),
    )
    .await
    {
        Ok(_) | Err(users::UserError::Exists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    app(issuer.state().clone())
}

/// A browser: keeps the issuer's cookie, never follows redirects.
struct Browser {
    app: Router,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_owned()
    }

    fn location(&self) -> url::Url {
        let location = self
            .headers
            .get(header::LOCATION)
            .unwrap_or_else(|| panic!("no redirect ({}): {}", self.status, self.body));
        url::Url::parse(location.to_str().unwrap()).unwrap()
    }

    fn param(&self, name: &str) -> Option<String> {
        self.location()
            .query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Browser {
    fn new(app: &Router) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&mut self, path_and_query: &str) -> Page {
        self.send(Request::get(path_and_query), Body::empty()).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }
}

fn authorize_url(client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", CALLBACK),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", "xyz-state"),
        ("resource", RESOURCE),
    ]);
    let mut url = format!("/authorize?{}", query.finish());
    for (name, value) in extra {
        url = replace_param(&url, name, value);
    }
    url
}

/// Sets (or with an empty value, removes) one query parameter.
fn replace_param(url: &str, name: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap();
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(n, _)| n != name)
        .collect();
    if !value.is_empty() {
        pairs.push((name.into(), value.into()));
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{query}")
}

/// Signs alice in and answers the consent page with `tools` (or denies with `None`).
async fn consent(browser: &mut Browser, start: &Page, tools: Option<&[&str]>) -> Page {
    let (request, csrf) = (start.field("request"), start.field("csrf"));
    let page = browser
        .post(
            "/authorize/sign-in",
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let mut form = vec![("request", request.as_str()), ("csrf", csrf.as_str())];
    match tools {
        Some(tools) => {
            form.push(("decision", "approve"));
            form.extend(tools.iter().map(|t| ("tool", *t)));
        }
        None => form.push(("decision", "deny")),
    }
    browser.post("/authorize/consent", &form).await
}

/// Registers a public client by RFC 7591.
async fn register_public(app: &Router) -> String {
    let (status, body) = post_json(
        app,
        "/register",
        json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none",
               "client_name": "Claude Desktop", "grant_types": ["authorization_code", "refresh_token"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("client_secret").is_none());
    body["client_id"].as_str().unwrap().to_owned()
}

async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    send(
        app,
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

/// POSTs a token request without client authentication headers.
async fn token_public(app: &Router, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    send(
        app,
        Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// Runs the flow up to the code, approving `tools`.
async fn code_for(app: &Router, client_id: &str, tools: &[&str]) -> String {
    let mut browser = Browser::new(app);
    let start = browser.get(&authorize_url(client_id, &[])).await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let answer = consent(&mut browser, &start, Some(tools)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.param("state").as_deref(), Some("xyz-state"));
    assert_eq!(answer.param("iss").as_deref(), Some(ISSUER));
    answer.param("code").expect("a code")
}

async fn redeem(app: &Router, client_id: &str, code: &str, verifier: &str) -> (StatusCode, Value) {
    token_public(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
            ("resource", RESOURCE),
        ],
    )
    .await
}

#[tokio::test]
async fn a_person_signs_in_narrows_the_request_and_the_agent_gets_a_delegation_token() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let mut browser = Browser::new(&app);
        let start = browser.get(&authorize_url(&client_id, &[])).await;
        assert_eq!(start.status, StatusCode::OK, "[{}] {}", b.name, start.body);
        assert_eq!(start.headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(start.body.contains("Claude Desktop") && start.body.contains("127.0.0.1"));

        let wrong = browser
            .post(
                "/authorize/sign-in",
                &[
                    ("request", &start.field("request")),
                    ("csrf", &start.field("csrf")),
                    ("username", "alice"),
                    ("password", "not her password"),
                ],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "[{}]", b.name);

        let signed_in = browser
            .post(
                "/authorize/sign-in",
                &[
                    ("request", &start.field("request")),
                    ("csrf", &start.field("csrf")),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert!(
            signed_in.body.contains("expenses/submit_expense"),
            "{}",
            signed_in.body
        );
        assert!(
            signed_in.body.contains("/amount ≤ 500"),
            "the consent page shows the limits"
        );
        // She approves listing only, not submitting.
        let answer = browser
            .post(
                "/authorize/consent",
                &[
                    ("request", &start.field("request")),
                    ("csrf", &start.field("csrf")),
                    ("decision", "approve"),
                    ("tool", "expenses/list_expenses"),
                ],
            )
            .await;
        let code = answer.param("code").expect("a code");
        let (status, tokens) = redeem(&app, &client_id, &code, VERIFIER).await;
        assert_eq!(status, StatusCode::OK, "[{}] {tokens}", b.name);
        assert_eq!(
            tokens["expires_in"], 300,
            "a full delegation lifetime: {tokens}"
        );
        assert!(
            tokens["refresh_token"]
                .as_str()
                .unwrap()
                .starts_with("pcr_")
        );
        let claims = verifier(&app)
            .await
            .verify(
                tokens["access_token"].as_str().unwrap(),
                &Expected {
                    audience: RESOURCE,
                    now: portcullis_issuer::now(),
                    actor: ActorRule::Required,
                },
            )
            .unwrap()
            .into_claims();
        assert_eq!(claims.subject, "alice");
        assert_eq!(claims.actors.as_ref().unwrap().current().sub, client_id);
        let constraints = claims.constraints.unwrap();
        assert!(constraints.allows_tool("expenses/list_expenses"));
        assert!(
            !constraints.allows_tool("expenses/submit_expense"),
            "she unticked it"
        );
    }
}

#[tokio::test]
async fn pkce_mismatch_and_code_reuse_are_refused_and_reuse_revokes_the_family() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let tools = ["expenses/list_expenses"];

        let code = code_for(&app, &client_id, &tools).await;
        let wrong_verifier = "x".repeat(43);
        assert_error(
            &b,
            redeem(&app, &client_id, &code, &wrong_verifier).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );

        let code = code_for(&app, &client_id, &tools).await;
        let (status, first) = redeem(&app, &client_id, &code, VERIFIER).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        let replay = redeem(&app, &client_id, &code, VERIFIER).await;
        assert_error(&b, replay, StatusCode::BAD_REQUEST, "invalid_grant");
        // The replay revoked the grant: the first access token and refresh token are dead.
        let rs = register(&app, "resource-server").await;
        let seen = introspect(&app, &rs, first["access_token"].as_str().unwrap()).await;
        assert_eq!(seen["active"], false, "[{}] {seen}", b.name);
        let refresh = token_public(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_error(&b, refresh, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_replayed_one_revokes_the_family() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        let (_, first) = redeem(&app, &client_id, &code, VERIFIER).await;
        let r1 = first["refresh_token"].as_str().unwrap().to_owned();
        let refresh = |token: String| {
            let (app, client_id) = (app.clone(), client_id.clone());
            async move {
                token_public(
                    &app,
                    &[
                        ("grant_type", "refresh_token"),
                        ("client_id", &client_id),
                        ("refresh_token", &token),
                    ],
                )
                .await
            }
        };
        let (status, second) = refresh(r1.clone()).await;
        assert_eq!(status, StatusCode::OK, "[{}] {second}", b.name);
        assert_eq!(second["expires_in"], 300, "{second}");
        let r2 = second["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(r1, r2, "rotated");
        // A thief replays r1: refused, and the legitimate r2 dies with the family.
        assert_error(
            &b,
            refresh(r1).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
        assert_error(
            &b,
            refresh(r2).await,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        );
        // Another client cannot use someone else's refresh token either.
        let other = register_public(&app).await;
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        let (_, fresh) = redeem(&app, &client_id, &code, VERIFIER).await;
        let stolen = token_public(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &other),
                ("refresh_token", fresh["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_error(&b, stolen, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

#[tokio::test]
async fn code_and_refresh_requests_are_counted_under_their_own_grant_type() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let before = (
            token_requests(&app, "authorization_code", "ok").await,
            token_requests(&app, "refresh_token", "ok").await,
        );
        let client_id = register_public(&app).await;
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        let (status, first) = redeem(&app, &client_id, &code, VERIFIER).await;
        assert_eq!(status, StatusCode::OK, "[{}] {first}", b.name);
        let (status, second) = token_public(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "[{}] {second}", b.name);
        // Other tests run alongside and count too: each label grows by at least ours.
        assert!(
            token_requests(&app, "authorization_code", "ok").await > before.0,
            "[{}] the code redemption is not counted as authorization_code",
            b.name
        );
        assert!(
            token_requests(&app, "refresh_token", "ok").await > before.1,
            "[{}] the refresh is not counted as refresh_token",
            b.name
        );
    }
}

#[tokio::test]
async fn bad_requests_are_shown_or_redirected_as_the_spec_says() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let mut browser = Browser::new(&app);

        // An unregistered redirect_uri is never redirected to.
        let page = browser
            .get(&authorize_url(
                &client_id,
                &[("redirect_uri", "https://evil.example/cb")],
            ))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "[{}]", b.name);
        assert!(page.headers.get(header::LOCATION).is_none());
        let page = browser.get(&authorize_url("no-such-client", &[])).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.headers.get(header::LOCATION).is_none());

        // Once client and redirect are known good, errors go back with state and iss.
        for (name, value, error) in [
            ("code_challenge_method", "", "invalid_request"),
            ("code_challenge_method", "plain", "invalid_request"),
            ("code_challenge", "", "invalid_request"),
            ("response_type", "token", "unsupported_response_type"),
            ("resource", "", "invalid_target"),
            (
                "authorization_details",
                "[{\"type\":\"payments\"}]",
                "invalid_authorization_details",
            ),
        ] {
            let page = browser
                .get(&authorize_url(&client_id, &[(name, value)]))
                .await;
            assert_eq!(
                page.status,
                StatusCode::SEE_OTHER,
                "[{}] {name}={value}: {}",
                b.name,
                page.body
            );
            assert_eq!(
                page.param("error").as_deref(),
                Some(error),
                "{name}={value}"
            );
            assert_eq!(page.param("state").as_deref(), Some("xyz-state"));
            assert_eq!(page.param("iss").as_deref(), Some(ISSUER));
        }

        // Asking for more than alice may delegate ends in access_denied after she signs in.
        let greedy =
            json!([{"type": "mcp_tools", "tools": ["expenses/delete_all_expenses"]}]).to_string();
        let start = browser
            .get(&authorize_url(
                &client_id,
                &[("authorization_details", &greedy)],
            ))
            .await;
        let answer = browser
            .post(
                "/authorize/sign-in",
                &[
                    ("request", &start.field("request")),
                    ("csrf", &start.field("csrf")),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            answer.param("error").as_deref(),
            Some("access_denied"),
            "[{}] {}",
            b.name,
            answer.body
        );

        // Denying.
        let start = browser.get(&authorize_url(&client_id, &[])).await;
        let denied = consent(&mut browser, &start, None).await;
        assert_eq!(denied.param("error").as_deref(), Some("access_denied"));
        assert!(denied.param("code").is_none());
    }
}

#[tokio::test]
async fn a_form_posted_without_the_browsers_csrf_cookie_is_refused() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let mut victim = Browser::new(&app);
        let start = victim.get(&authorize_url(&client_id, &[])).await;
        // Another site makes the victim's browser (without the cookie) or another browser
        // post the form.
        let mut attacker = Browser::new(&app);
        let page = attacker
            .post(
                "/authorize/sign-in",
                &[
                    ("request", &start.field("request")),
                    ("csrf", &start.field("csrf")),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "[{}]", b.name);
        attacker.cookie = Some("portcullis-csrf=forged".into());
        let page = attacker
            .post(
                "/authorize/sign-in",
                &[
                    ("request", &start.field("request")),
                    ("csrf", "forged"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        // Consent before signing in is refused.
        let page = victim
            .post(
                "/authorize/consent",
                &[
                    ("request", &start.field("request")),
                    ("csrf", &start.field("csrf")),
                    ("decision", "approve"),
                    ("tool", "expenses/list_expenses"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn public_clients_cannot_use_other_grants_and_registration_checks_metadata() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let refused = token_public(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
            ],
        )
        .await;
        assert_error(&b, refused, StatusCode::BAD_REQUEST, "unauthorized_client");
        let refused = token_public(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "expense-agent"),
            ],
        )
        .await;
        assert_error(&b, refused, StatusCode::UNAUTHORIZED, "invalid_client");

        for (body, error) in [
            (json!({"client_name": "x"}), "invalid_redirect_uri"),
            (
                json!({"redirect_uris": ["http://evil.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://app.example/cb#frag"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": [CALLBACK], "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": [CALLBACK], "jwks_uri": "https://app.example/jwks"}),
                "invalid_client_metadata",
            ),
        ] {
            assert_error(
                &b,
                post_json(&app, "/register", body).await,
                StatusCode::BAD_REQUEST,
                error,
            );
        }
        let (status, confidential) =
            post_json(&app, "/register", json!({"redirect_uris": [CALLBACK]})).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(confidential["client_secret"].as_str().unwrap().len() >= 40);

        let closed = issuer_with(&b, |c| c.dynamic_registration = false).await;
        let (status, _) =
            post_json(&closed, "/register", json!({"redirect_uris": [CALLBACK]})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, meta) = send(
            &closed,
            Request::get("/.well-known/oauth-authorization-server")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert!(meta.get("registration_endpoint").is_none());
        assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(meta["client_id_metadata_document_supported"], true);
    }
}

#[tokio::test]
async fn a_private_key_jwt_client_authenticates_with_a_signed_assertion_once() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let key = SigningKey::es256_from_secret("agent-key-1", &[7u8; 32]).unwrap();
        let jwks = json!({"keys": [key.public_jwk()]});
        let (status, registered) = post_json(
            &app,
            "/register",
            json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{registered}");
        let client_id = registered["client_id"].as_str().unwrap().to_owned();
        let now = portcullis_issuer::now();
        let token_endpoint = format!("{ISSUER}/token");
        let assertion = portcullis_policy::sign_client_assertion(
            &client_id,
            &token_endpoint,
            &key,
            now,
            60,
            "jti-1",
        );
        let redeem_with = |code: String, assertion: String| {
            let app = app.clone();
            async move {
                token_public(
                    &app,
                    &[
                        ("grant_type", "authorization_code"),
                        ("code", &code),
                        ("redirect_uri", CALLBACK),
                        ("code_verifier", VERIFIER),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &assertion),
                    ],
                )
                .await
            }
        };
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        let (status, body) = redeem_with(code, assertion.clone()).await;
        assert_eq!(status, StatusCode::OK, "[{}] {body}", b.name);

        // The same assertion again: a replay.
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        assert_error(
            &b,
            redeem_with(code.clone(), assertion).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
        // Another audience, another key, too long a lifetime.
        let elsewhere = portcullis_policy::sign_client_assertion(
            &client_id,
            "https://other.example/token",
            &key,
            now,
            60,
            "jti-2",
        );
        assert_error(
            &b,
            redeem_with(code.clone(), elsewhere).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
        let stranger = SigningKey::es256_from_secret("agent-key-1", &[8u8; 32]).unwrap();
        let forged = portcullis_policy::sign_client_assertion(
            &client_id,
            &token_endpoint,
            &stranger,
            now,
            60,
            "jti-3",
        );
        assert_error(
            &b,
            redeem_with(code.clone(), forged).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
        let eternal = portcullis_policy::sign_client_assertion(
            &client_id,
            &token_endpoint,
            &key,
            now,
            86_400,
            "jti-4",
        );
        assert_error(
            &b,
            redeem_with(code, eternal).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
}

type Document = (
    &'static str,
    StatusCode,
    Vec<(&'static str, String)>,
    String,
);

/// A loopback web server for client metadata documents, made by `documents` from its base URL,
/// counting the requests it serves.
async fn document_server(
    documents: impl FnOnce(&str) -> Vec<Document>,
) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let mut router = Router::new();
    for (path, status, headers, body) in documents(&base) {
        let hits = hits.clone();
        router = router.route(
            path,
            axum::routing::get(move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let (headers, body) = (headers.clone(), body.clone());
                async move {
                    let mut response = axum::response::Response::new(Body::from(body));
                    *response.status_mut() = status;
                    for (name, value) in headers {
                        response.headers_mut().insert(name, value.parse().unwrap());
                    }
                    response
                }
            }),
        );
    }
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, hits)
}

#[tokio::test]
async fn client_metadata_documents_are_fetched_checked_and_never_an_ssrf() {
    let (base, hits) = document_server(|base| {
        let doc = |path: &str, redirect: &str, id: Option<&str>| {
            json!({"client_id": id.map_or_else(|| format!("{base}{path}"), str::to_owned),
                   "client_name": "Metadata Agent", "redirect_uris": [redirect]})
            .to_string()
        };
        let json_type = vec![("content-type", "application/json".to_owned())];
        vec![
            (
                "/good.json",
                StatusCode::OK,
                json_type.clone(),
                doc("/good.json", CALLBACK, None),
            ),
            (
                "/other-redirect.json",
                StatusCode::OK,
                json_type.clone(),
                doc("/other-redirect.json", "https://elsewhere.example/cb", None),
            ),
            (
                "/impostor.json",
                StatusCode::OK,
                json_type,
                doc(
                    "/impostor.json",
                    CALLBACK,
                    Some("https://victim.example/client.json"),
                ),
            ),
            (
                "/to-private",
                StatusCode::FOUND,
                vec![("location", "http://10.0.0.7/client.json".to_owned())],
                String::new(),
            ),
        ]
    })
    .await;

    for b in backends().await {
        let dev = issuer_with(&b, |c| c.allow_loopback_fetch = true).await;
        let mut browser = Browser::new(&dev);
        let good = format!("{base}/good.json");
        let page = browser.get(&authorize_url(&good, &[])).await;
        assert_eq!(page.status, StatusCode::OK, "[{}] {}", b.name, page.body);
        assert!(page.body.contains("Metadata Agent"));
        let code = {
            let answer = consent(&mut browser, &page, Some(&["expenses/list_expenses"])).await;
            answer.param("code").expect("a code")
        };
        let (status, body) = redeem(&dev, &good, &code, VERIFIER).await;
        assert_eq!(status, StatusCode::OK, "[{}] {body}", b.name);

        for (path, why) in [
            (
                "/other-redirect.json",
                "a redirect_uri the document does not list",
            ),
            ("/impostor.json", "a document naming another client_id"),
            ("/to-private", "a redirect to a private address"),
            ("/missing.json", "a 404"),
        ] {
            let page = browser
                .get(&authorize_url(&format!("{base}{path}"), &[]))
                .await;
            assert_eq!(
                page.status,
                StatusCode::BAD_REQUEST,
                "[{}] {why}: {}",
                b.name,
                page.body
            );
            assert!(page.headers.get(header::LOCATION).is_none(), "{why}");
        }

        // In production mode, loopback, link-local and private targets are refused before any
        // connection is made.
        let prod = issuer_with(&b, |_| {}).await;
        let mut browser = Browser::new(&prod);
        let before = hits.load(Ordering::SeqCst);
        let https_loopback = format!("https://{}/good.json", base.trim_start_matches("http://"));
        for client_id in [
            good.as_str(),
            https_loopback.as_str(),
            "https://169.254.169.254/latest/meta-data/client.json",
            "https://10.0.0.7/client.json",
            "https://[::ffff:127.0.0.1]/client.json",
            "https://localhost/client.json",
        ] {
            let page = browser.get(&authorize_url(client_id, &[])).await;
            assert_eq!(
                page.status,
                StatusCode::BAD_REQUEST,
                "[{}] {client_id}: {}",
                b.name,
                page.body
            );
        }
        assert_eq!(
            hits.load(Ordering::SeqCst),
            before,
            "no request reached the document server"
        );
    }
}

#[tokio::test]
async fn a_public_client_cannot_introspect_and_revoking_its_refresh_token_ends_the_grant() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let client_id = register_public(&app).await;
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        let (_, tokens) = redeem(&app, &client_id, &code, VERIFIER).await;
        let access = tokens["access_token"].as_str().unwrap();
        let refresh = tokens["refresh_token"].as_str().unwrap();
        let form = |path: &'static str, token: &str| {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("client_id", client_id.as_str()), ("token", token)])
                .finish();
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap()
        };
        // Anyone can claim a public client's id: it must not make introspection an oracle.
        let refused = send(&app, form("/introspect", access)).await;
        assert_error(&b, refused, StatusCode::BAD_REQUEST, "unauthorized_client");

        // RFC 7009: revoking the refresh token ends the grant, access token included.
        let (status, _) = send(&app, form("/revoke", refresh)).await;
        assert_eq!(status, StatusCode::OK, "[{}]", b.name);
        let rs = register(&app, "resource-server").await;
        let seen = introspect(&app, &rs, access).await;
        assert_eq!(seen["active"], false, "[{}] {seen}", b.name);
        let again = token_public(
            &app,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client_id),
                ("refresh_token", refresh),
            ],
        )
        .await;
        assert_error(&b, again, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}
