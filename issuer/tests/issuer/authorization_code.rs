//! The authorization-code flow, driven like a browser: sign-in and consent pages, PKCE,
//! one-time codes, refresh rotation with reuse detection, dynamic registration, client
//! metadata documents fetched without SSRF, and `private_key_jwt`.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portcullis_policy::{ActorRule, Expected, SigningKey};
use serde_json::json;

use crate::browser::*;
use crate::support::*;

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
        assert!(constraints.allows_tool("expenses/list_expenses", None));
        assert!(
            !constraints.allows_tool("expenses/submit_expense", None),
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
