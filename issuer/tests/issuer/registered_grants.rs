//! Each client uses only the grant types stored with it: a client that registered itself, by
//! RFC 7591 or by metadata document, gets the code flow and its refresh tokens and nothing
//! else (no agent token, no exchange), while an operator's agents keep every grant type, also
//! across the migration that began storing them.

use axum::Router;
use axum::http::StatusCode;
use portcullis_issuer::clients;
use portcullis_issuer::secret::hash_secret;
use portcullis_issuer::token::grant_type::{GrantType, GrantTypes};
use portcullis_policy::SigningKey;
use serde_json::{Value, json};

use crate::browser::*;
use crate::support::*;

/// The last migration before grant types were stored.
const BEFORE_GRANT_TYPES: i64 = 7;

/// Registers a client with a secret by RFC 7591; `extra` is merged into the request.
async fn register_dynamic(app: &Router, extra: Value) -> ((String, String), Value) {
    let mut request = json!({"redirect_uris": [CALLBACK], "client_name": "Self-registered"});
    request
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, registered) = post_json(app, "/register", request).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let client = (
        registered["client_id"].as_str().unwrap().to_owned(),
        registered["client_secret"].as_str().unwrap().to_owned(),
    );
    (client, registered)
}

/// Asserts a refusal with `unauthorized_client` that carries no token.
fn assert_unauthorized_client(backend: &Backend, answer: (StatusCode, Value)) {
    assert!(
        answer.1.get("access_token").is_none(),
        "[{}] a token was issued: {}",
        backend.name,
        answer.1
    );
    assert_error(
        backend,
        answer,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
    );
}

/// The form of a re-delegation: `delegation` handed on to the agent of `actor`.
fn redelegation(delegation: &str, actor: String) -> Vec<(&'static str, String)> {
    vec![
        ("grant_type", EXCHANGE.to_owned()),
        ("subject_token", delegation.to_owned()),
        ("subject_token_type", ACCESS.to_owned()),
        ("actor_token", actor),
        ("actor_token_type", ACCESS.to_owned()),
        ("resource", RESOURCE.to_owned()),
    ]
}

fn borrowed<'a>(form: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    form.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs the code flow for a client with a secret; answers the redeemed code's token response.
async fn redeem_with_secret(backend: &Backend, app: &Router, client: &(String, String)) -> Value {
    let code = code_for(app, &client.0, &["expenses/list_expenses"]).await;
    let (status, redeemed) = token(
        app,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
            ("resource", RESOURCE),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "[{}] {redeemed}", backend.name);
    redeemed
}

#[tokio::test]
async fn a_client_registered_for_the_code_flow_gets_no_client_credentials_token() {
    for b in backends().await {
        let app = open(&b).await;
        for grant_types in [json!({"grant_types": ["authorization_code"]}), json!({})] {
            let (client, registered) = register_dynamic(&app, grant_types).await;
            assert_eq!(registered["grant_types"], json!(["authorization_code"]));
            let answer = token(&app, &client, &[("grant_type", "client_credentials")]).await;
            assert_unauthorized_client(&b, answer);
        }
    }
}

#[tokio::test]
async fn a_client_registered_for_the_code_flow_cannot_exchange_tokens() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let w = world_in(app.clone()).await;
        let (client, _) = register_dynamic(
            &app,
            json!({"grant_types": ["authorization_code", "refresh_token"]}),
        )
        .await;
        // A delegation token of its own, by consent, and another agent's valid client token:
        // all a re-delegation needs, but for the grant type.
        let redeemed = redeem_with_secret(&b, &app, &client).await;
        let actor = client_token(&app, &w.agent).await;
        let form = redelegation(redeemed["access_token"].as_str().unwrap(), actor);
        let answer = token(&app, &client, &borrowed(&form)).await;
        assert_unauthorized_client(&b, answer);
    }
}

#[tokio::test]
async fn a_client_registered_only_for_codes_still_redeems_them_and_refreshes() {
    for b in backends().await {
        let app = issuer_with(&b, |_| {}).await;
        let (client, _) =
            register_dynamic(&app, json!({"grant_types": ["authorization_code"]})).await;
        let redeemed = redeem_with_secret(&b, &app, &client).await;
        let (status, refreshed) = token(
            &app,
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", redeemed["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "[{}] {refreshed}", b.name);
        assert!(refreshed["access_token"].is_string());
    }
}

#[tokio::test]
async fn a_metadata_document_client_gets_the_code_flow_and_nothing_else() {
    let key = SigningKey::es256_from_secret("metadata-agent-key", &[9u8; 32]).unwrap();
    let jwk = key.public_jwk();
    let (base, _) = document_server(move |base| {
        let doc = |path: &str, extra: Value| {
            let mut doc = json!({"client_id": format!("{base}{path}"),
                                 "client_name": "Metadata Agent", "redirect_uris": [CALLBACK],
                                 "token_endpoint_auth_method": "private_key_jwt",
                                 "jwks": {"keys": [jwk.clone()]}});
            doc.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            doc.to_string()
        };
        let json_type = vec![("content-type", "application/json".to_owned())];
        vec![
            (
                "/agent.json",
                StatusCode::OK,
                json_type.clone(),
                doc("/agent.json", json!({})),
            ),
            (
                "/greedy.json",
                StatusCode::OK,
                json_type,
                doc(
                    "/greedy.json",
                    json!({"grant_types": ["authorization_code", "client_credentials"]}),
                ),
            ),
        ]
    })
    .await;
    let client_id = format!("{base}/agent.json");
    let jti = std::sync::atomic::AtomicUsize::new(0);
    let assertion = || {
        let n = jti.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        vec![
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            (
                "client_assertion",
                portcullis_policy::sign_client_assertion(
                    &client_id,
                    &format!("{ISSUER}/token"),
                    &key,
                    portcullis_issuer::now(),
                    60,
                    &format!("jti-{n}"),
                ),
            ),
        ]
    };

    for b in backends().await {
        let app = issuer_with(&b, |c| c.allow_loopback_fetch = true).await;
        let w = world_in(app.clone()).await;
        // The issuer learns of the client from its document at the authorization endpoint.
        let code = code_for(&app, &client_id, &["expenses/list_expenses"]).await;
        let mut form = assertion();
        form.extend([
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", CALLBACK.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
            ("resource", RESOURCE.to_owned()),
        ]);
        let (status, redeemed) = token_public(&app, &borrowed(&form)).await;
        assert_eq!(status, StatusCode::OK, "[{}] {redeemed}", b.name);
        let mut form = assertion();
        form.extend([
            ("grant_type", "refresh_token".to_owned()),
            (
                "refresh_token",
                redeemed["refresh_token"].as_str().unwrap().to_owned(),
            ),
        ]);
        let (status, refreshed) = token_public(&app, &borrowed(&form)).await;
        assert_eq!(status, StatusCode::OK, "[{}] {refreshed}", b.name);

        let mut form = assertion();
        form.push(("grant_type", "client_credentials".to_owned()));
        assert_unauthorized_client(&b, token_public(&app, &borrowed(&form)).await);
        let mut form = assertion();
        form.extend(redelegation(
            refreshed["access_token"].as_str().unwrap(),
            client_token(&app, &w.agent).await,
        ));
        assert_unauthorized_client(&b, token_public(&app, &borrowed(&form)).await);

        // A document that asks for more than the code flow is refused outright.
        let page = Browser::new(&app)
            .get(&authorize_url(&format!("{base}/greedy.json"), &[]))
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "[{}]", b.name);
    }
}

#[tokio::test]
async fn an_operators_agents_keep_client_credentials_and_exchange() {
    for b in backends().await {
        // Registered through the admin API: an agent token and an exchange.
        let w = world(&b).await;
        delegation(&w).await;
        // Registered from the CLI.
        let created: Value = serde_json::from_str(
            &cli(
                &b,
                &[
                    "clients",
                    "create",
                    "--name",
                    "CLI agent",
                    "--id",
                    "cli-agent",
                ],
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            created["grant_types"],
            json!(GrantType::ALL.map(GrantType::wire_name)),
            "[{}]",
            b.name
        );
        let agent = (
            "cli-agent".to_owned(),
            created["client_secret"].as_str().unwrap().to_owned(),
        );
        client_token(&w.app, &agent).await;
        // A public client of the operator's is held to the code flow, as before.
        let public: Value = serde_json::from_str(
            &cli(
                &b,
                &[
                    "clients",
                    "create",
                    "--name",
                    "CLI app",
                    "--public",
                    "--redirect-uri",
                    CALLBACK,
                ],
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            public["grant_types"],
            json!(["authorization_code", "refresh_token"])
        );
    }
}

#[tokio::test]
async fn clients_stored_before_grant_types_were_keep_what_they_could_use_and_no_more() {
    for b in backends().await {
        // A database as the previous release left it, with a client of each kind.
        let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
        sqlx::migrate!("./migrations")
            .run_to(BEFORE_GRANT_TYPES, db.pool())
            .await
            .unwrap();
        for (id, auth_method, origin) in [
            ("old-agent", "client_secret_basic", "operator"),
            ("old-app", "none", "operator"),
            ("dyn-old", "client_secret_basic", "dynamic"),
            ("dyn-old-jwt", "private_key_jwt", "dynamic"),
            ("https://app.example/client.json", "none", "metadata"),
        ] {
            sqlx::query(
                "INSERT INTO clients (client_id, name, secret_hash, created_at, auth_method, origin)
                 VALUES ($1, $1, $2, 0, $3, $4)",
            )
            .bind(id)
            .bind(hash_secret("an-old-secret"))
            .bind(auth_method)
            .bind(origin)
            .execute(db.pool())
            .await
            .unwrap();
        }
        db.pool().close().await;

        let issuer = open_issuer(&b).await;
        let db = &issuer.state().db;
        for (id, expected) in [
            ("old-agent", GrantTypes::all()),
            ("old-app", GrantTypes::code_flow()),
            ("dyn-old", GrantTypes::code_flow()),
            ("dyn-old-jwt", GrantTypes::code_flow()),
            ("https://app.example/client.json", GrantTypes::code_flow()),
        ] {
            let client = clients::get(db, id).await.unwrap().unwrap();
            assert_eq!(client.grant_types, expected, "[{}] {id}", b.name);
        }
        let app = portcullis_issuer::app(issuer.state().clone());
        let secret = "an-old-secret".to_owned();
        client_token(&app, &("old-agent".to_owned(), secret.clone())).await;
        let answer = token(
            &app,
            &("dyn-old".to_owned(), secret),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_unauthorized_client(&b, answer);
    }
}
