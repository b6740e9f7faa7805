//! A browser for the authorization-code flow (sign-in, consent, the redirect with its code),
//! an issuer with a person to sign in as, and the requests public and registered clients make:
//! the fixtures of the tests of that flow and of what registered clients may do.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::BodyExt;
use portcullis_issuer::{Issuer, IssuerConfig, app, users};
use portcullis_policy::Constraints;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::support::*;

pub(crate) const CALLBACK: &str = "http://127.0.0.1:3000/callback";
pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// An issuer with alice in its user store, configured by `tweak`.
pub(crate) async fn issuer_with(
    backend: &Backend,
    tweak: impl FnOnce(&mut IssuerConfig),
) -> Router {
    let mut config = IssuerConfig::new(ISSUER);
    config.admin_token = Some(ADMIN.into());
    tweak(&mut config);
    let issuer = Issuer::open(config, &backend.storage).await.unwrap();
    let allowance =
        Constraints::from_authorization_details(grant_details().as_array().unwrap()).unwrap();
    // A second issuer on the same database finds her already there.
    match users::create(
        &issuer.state().db,
        users::NewUser {
            username: "alice",
            password: PASSWORD,
            resources: vec![RESOURCE.into()],
            allowance,
            operator: false,
        },
        portcullis_issuer::now(),
    )
    .await
    {
        Ok(_) | Err(users::UserError::Exists(_)) => {}
        Err(e) => panic!("{e}"),
    }
    app(issuer.state().clone())
}

/// An issuer configured by `tweak`, with alice and bob in its user store (both allowed the
/// test grant's tools at the test resource), for the tests of the pages people use.
pub(crate) async fn issuer_with_people(
    backend: &Backend,
    tweak: impl FnOnce(&mut IssuerConfig),
) -> Issuer {
    let issuer = open_issuer_with(backend, tweak).await;
    let allowance =
        Constraints::from_authorization_details(grant_details().as_array().unwrap()).unwrap();
    for person in ["alice", "bob"] {
        users::create(
            &issuer.state().db,
            users::NewUser {
                username: person,
                password: PASSWORD,
                resources: vec![RESOURCE.into()],
                allowance: allowance.clone(),
                operator: false,
            },
            portcullis_issuer::now(),
        )
        .await
        .unwrap();
    }
    issuer
}

/// A browser: keeps the issuer's cookie, never follows redirects.
pub(crate) struct Browser {
    app: Router,
    pub(crate) cookie: Option<String>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_owned()
    }

    pub(crate) fn location(&self) -> url::Url {
        let location = self
            .headers
            .get(header::LOCATION)
            .unwrap_or_else(|| panic!("no redirect ({}): {}", self.status, self.body));
        url::Url::parse(location.to_str().unwrap()).unwrap()
    }

    pub(crate) fn param(&self, name: &str) -> Option<String> {
        self.location()
            .query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Browser {
    /// A browser signed in as `who` (password [`PASSWORD`]) at `/sign-in`, sent on to `next`.
    pub(crate) async fn signed_in(app: &Router, who: &str, next: &str) -> Self {
        let mut browser = Self::new(app);
        let page = browser
            .post(
                "/sign-in",
                &[("username", who), ("password", PASSWORD), ("next", next)],
            )
            .await;
        assert_eq!(page.headers[header::LOCATION], next, "{who} signs in");
        browser
    }

    pub(crate) fn new(app: &Router) -> Self {
        Self {
            app: app.clone(),
            cookie: None,
        }
    }

    pub(crate) async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Page {
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

    pub(crate) async fn get(&mut self, path_and_query: &str) -> Page {
        self.send(Request::get(path_and_query), Body::empty()).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
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

pub(crate) fn authorize_url(client_id: &str, extra: &[(&str, &str)]) -> String {
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
pub(crate) fn replace_param(url: &str, name: &str, value: &str) -> String {
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
pub(crate) async fn consent(browser: &mut Browser, start: &Page, tools: Option<&[&str]>) -> Page {
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
pub(crate) async fn register_public(app: &Router) -> String {
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

pub(crate) async fn post_json(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
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
pub(crate) async fn token_public(app: &Router, form: &[(&str, &str)]) -> (StatusCode, Value) {
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
pub(crate) async fn code_for(app: &Router, client_id: &str, tools: &[&str]) -> String {
    let mut browser = Browser::new(app);
    let start = browser.get(&authorize_url(client_id, &[])).await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.body);
    let answer = consent(&mut browser, &start, Some(tools)).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.param("state").as_deref(), Some("xyz-state"));
    assert_eq!(answer.param("iss").as_deref(), Some(ISSUER));
    answer.param("code").expect("a code")
}

pub(crate) async fn redeem(
    app: &Router,
    client_id: &str,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
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

pub(crate) type Document = (
    &'static str,
    StatusCode,
    Vec<(&'static str, String)>,
    String,
);

/// A loopback web server for client metadata documents, made by `documents` from its base URL,
/// counting the requests it serves.
pub(crate) async fn document_server(
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
