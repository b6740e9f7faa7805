//! Client authentication, token exchange and re-delegation; keys and secrets at rest.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_issuer::{Issuer, IssuerConfig};
use portcullis_policy::{ActorRule, Expected};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn metadata_and_jwks_are_published() {
    for b in backends().await {
        let app = open(&b).await;
        let (status, meta) = send(
            &app,
            Request::get("/.well-known/oauth-authorization-server")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(meta["issuer"], ISSUER);
        assert_eq!(meta["token_endpoint"], format!("{ISSUER}/token"));
        assert!(
            meta["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(EXCHANGE))
        );
        let v = verifier(&app).await;
        assert_eq!(v.keys().len(), 1, "[{}]", b.name);
    }
}

#[tokio::test]
async fn signing_key_survives_a_restart_and_is_sealed_at_rest() {
    for b in backends().await {
        let first = open(&b).await;
        let (_, jwks1) = send(
            &first,
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let second = open(&b).await;
        let (_, jwks2) = send(
            &second,
            Request::get("/.well-known/jwks.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(
            jwks1, jwks2,
            "[{}] a restart must not mint a new key",
            b.name
        );

        let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
        let sealed: String = sqlx::query_scalar("SELECT sealed_secret FROM signing_keys")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert!(sealed.starts_with("v1."), "[{}] {sealed}", b.name);
    }
}

#[tokio::test]
async fn a_wrong_key_encryption_secret_refuses_to_start() {
    for b in backends().await {
        let _first_start = open(&b).await;
        let mut storage = b.storage.clone();
        storage.key_encryption_secret = Some("another-secret-that-is-long-enough-to-use".into());
        let err = Issuer::open(IssuerConfig::new(ISSUER), &storage)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                portcullis_issuer::Error::Keys(
                    portcullis_issuer::keys::KeyStoreError::Unseal { .. }
                )
            ),
            "[{}] {err}",
            b.name
        );
    }
}

#[tokio::test]
async fn client_secret_is_stored_only_as_a_hash() {
    for b in backends().await {
        let app = open(&b).await;
        let (_, secret) = register(&app, "expense-agent").await;
        let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
        let stored: String = sqlx::query_scalar("SELECT secret_hash FROM clients")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_ne!(stored, secret);
        assert!(!stored.contains(&secret[4..]), "[{}]", b.name);
        assert!(secret.len() >= 40, "a client secret carries 256 bits");
    }
}

#[tokio::test]
async fn wrong_or_missing_client_secret_is_invalid_client() {
    for b in backends().await {
        let app = open(&b).await;
        let (id, _) = register(&app, "expense-agent").await;
        let wrong = token(
            &app,
            &(id.clone(), "pcs_wrong".into()),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_error(&b, wrong, StatusCode::UNAUTHORIZED, "invalid_client");
        let unknown = token(
            &app,
            &("nobody".into(), "x".into()),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_error(&b, unknown, StatusCode::UNAUTHORIZED, "invalid_client");
        let request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap();
        assert_error(
            &b,
            send(&app, request).await,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        );
    }
}

#[tokio::test]
async fn token_exchange_makes_a_delegation_token_on_behalf_of_the_user() {
    for b in backends().await {
        let w = world(&b).await;
        let token = delegation(&w).await;
        let verified = verifier(&w.app)
            .await
            .verify(
                &token,
                &Expected {
                    audience: RESOURCE,
                    now: portcullis_issuer::now(),
                    actor: ActorRule::Required,
                },
            )
            .unwrap();
        let claims = verified.claims();
        assert_eq!(claims.subject, "alice", "[{}]", b.name);
        assert_eq!(
            claims.actors.as_ref().unwrap().current().sub,
            "expense-agent"
        );
        assert_eq!(claims.grant_id.as_deref(), Some(w.grant_id.as_str()));
        assert_eq!(claims.client_id, "expense-agent");
        assert!(claims.expires_at - claims.issued_at <= 300);
        let raw = decode(&token);
        assert_eq!(raw["authorization_details"], grant_details());
    }
}

#[tokio::test]
async fn exchange_response_follows_rfc_8693() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let (status, body) = exchange(&w, &w.agent, &w.subject_token, &actor, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["issued_token_type"], ACCESS);
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_i64().unwrap() > 0);
    }
}

#[tokio::test]
async fn exchange_without_actor_token_is_invalid_request() {
    for b in backends().await {
        let w = world(&b).await;
        let form = [
            ("grant_type", EXCHANGE),
            ("subject_token", w.subject_token.as_str()),
            ("subject_token_type", ACCESS),
            ("resource", RESOURCE),
        ];
        assert_error(
            &b,
            token(&w.app, &w.agent, &form).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
}

#[tokio::test]
async fn exchange_for_a_resource_outside_the_grant_is_invalid_target() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let got = exchange(
            &w,
            &w.agent,
            &w.subject_token,
            &actor,
            &[("resource", "http://gw.test/mcp/payroll")],
        )
        .await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_target");
    }
}

#[tokio::test]
async fn exchange_asking_for_more_tools_than_the_grant_is_invalid_scope() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let wider = json!([{"type": "mcp_tools", "tools": ["expenses/*"]}]).to_string();
        let got = exchange(
            &w,
            &w.agent,
            &w.subject_token,
            &actor,
            &[("authorization_details", &wider)],
        )
        .await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_scope");
    }
}

#[tokio::test]
async fn malformed_authorization_details_are_refused() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let got = exchange(
            &w,
            &w.agent,
            &w.subject_token,
            &actor,
            &[("authorization_details", r#"[{"type":"payments"}]"#)],
        )
        .await;
        assert_error(
            &b,
            got,
            StatusCode::BAD_REQUEST,
            "invalid_authorization_details",
        );
    }
}

#[tokio::test]
async fn another_agent_cannot_exchange_a_grant_given_to_someone_else() {
    for b in backends().await {
        let w = world(&b).await;
        let thief = register(&w.app, "thief-agent").await;
        let actor = client_token(&w.app, &thief).await;
        let got = exchange(&w, &thief, &w.subject_token, &actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

#[tokio::test]
async fn actor_token_of_another_client_is_refused_on_a_first_exchange() {
    for b in backends().await {
        let w = world(&b).await;
        let other = register(&w.app, "other-agent").await;
        let actor = client_token(&w.app, &other).await;
        let got = exchange(&w, &w.agent, &w.subject_token, &actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn tampered_subject_token_is_invalid_request() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let mut parts: Vec<String> = w.subject_token.split('.').map(str::to_owned).collect();
        let mut claims = decode(&w.subject_token);
        claims["sub"] = json!("mallory");
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        let got = exchange(&w, &w.agent, &parts.join("."), &actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn a_client_token_is_not_a_subject_token() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let got = exchange(&w, &w.agent, &actor, &actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn sub_agent_gets_an_attenuated_token_with_the_chain_grown() {
    for b in backends().await {
        let w = world(&b).await;
        let parent = delegation(&w).await;
        let sub = register(&w.app, "receipts-agent").await;
        let sub_actor = client_token(&w.app, &sub).await;
        let tighter = json!([{"type": "mcp_tools", "tools": ["expenses/submit_expense"],
            "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 100}]}])
        .to_string();
        let (status, body) = exchange(
            &w,
            &w.agent,
            &parent,
            &sub_actor,
            &[("authorization_details", &tighter)],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "[{}] {body}", b.name);
        let child = decode(body["access_token"].as_str().unwrap());
        assert_eq!(child["sub"], "alice");
        assert_eq!(child["client_id"], "receipts-agent");
        assert_eq!(
            child["act"],
            json!({"sub": "receipts-agent", "act": {"sub": "expense-agent"}})
        );
        let limits = child["authorization_details"][0]["limits"]
            .as_array()
            .unwrap();
        assert!(limits.contains(
            &json!({"tool": "expenses/submit_expense", "pointer": "/amount", "max": 100})
        ));
        assert!(
            limits.iter().any(|l| l["pointer"] == "/category"),
            "the parent's category limit is inherited"
        );
        assert_eq!(child["authorization_details"][0]["max_depth"], 0);
        assert!(child["exp"].as_i64() <= decode(&parent)["exp"].as_i64());

        // The sub-agent's token is at depth 0: it cannot be delegated again.
        let third = register(&w.app, "third-agent").await;
        let third_actor = client_token(&w.app, &third).await;
        let child_token = body["access_token"].as_str().unwrap();
        let got = exchange(&w, &sub, child_token, &third_actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_scope");
    }
}

#[tokio::test]
async fn only_the_holder_of_a_delegation_token_may_redelegate_it() {
    for b in backends().await {
        let w = world(&b).await;
        let parent = delegation(&w).await;
        let thief = register(&w.app, "thief-agent").await;
        let thief_actor = client_token(&w.app, &thief).await;
        let got = exchange(&w, &thief, &parent, &thief_actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn redelegation_cannot_move_the_token_to_another_resource() {
    for b in backends().await {
        let w = world(&b).await;
        let parent = delegation(&w).await;
        let sub = register(&w.app, "receipts-agent").await;
        let sub_actor = client_token(&w.app, &sub).await;
        let got = exchange(
            &w,
            &w.agent,
            &parent,
            &sub_actor,
            &[("resource", "http://gw.test/mcp/payroll")],
        )
        .await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_target");
    }
}

#[tokio::test]
async fn repeated_parameters_and_unknown_grant_types_are_refused() {
    for b in backends().await {
        let w = world(&b).await;
        let got = token(
            &w.app,
            &w.agent,
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "password"),
            ],
        )
        .await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
        let got = token(&w.app, &w.agent, &[("grant_type", "password")]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    for b in backends().await {
        let app = open(&b).await;
        let request = Request::post("/admin/clients")
            .header(header::AUTHORIZATION, "Bearer not-the-admin-token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name":"x"}"#))
            .unwrap();
        assert_error(
            &b,
            send(&app, request).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
}

#[tokio::test]
async fn an_agent_cannot_redelegate_to_itself() {
    for b in backends().await {
        let w = world(&b).await;
        let parent = delegation(&w).await;
        let actor = client_token(&w.app, &w.agent).await;
        let got = exchange(&w, &w.agent, &parent, &actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn a_subject_token_is_not_an_actor_token() {
    for b in backends().await {
        let w = world(&b).await;
        let got = exchange(&w, &w.agent, &w.subject_token, &w.subject_token, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn two_client_authentication_methods_at_once_are_refused() {
    for b in backends().await {
        let w = world(&b).await;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", w.agent.0.as_str()),
            ("client_secret", w.agent.1.as_str()),
        ];
        let got = token(&w.app, &w.agent, &form).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn authorization_details_with_a_duplicate_key_are_refused() {
    for b in backends().await {
        let w = world(&b).await;
        let actor = client_token(&w.app, &w.agent).await;
        let doubled =
            r#"[{"type":"mcp_tools","tools":["expenses/submit_expense"],"tools":["expenses/*"]}]"#;
        let got = exchange(
            &w,
            &w.agent,
            &w.subject_token,
            &actor,
            &[("authorization_details", doubled)],
        )
        .await;
        assert_error(
            &b,
            got,
            StatusCode::BAD_REQUEST,
            "invalid_authorization_details",
        );
    }
}

#[tokio::test]
async fn a_public_key_planted_in_the_database_refuses_to_start() {
    for b in backends().await {
        let _first_start = open(&b).await;
        let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
        let attacker = portcullis_policy::SigningKey::ed25519_from_seed("x", &[9; 32]).unwrap();
        let mut jwk: Value = sqlx::query_scalar::<_, String>("SELECT public_jwk FROM signing_keys")
            .fetch_one(db.pool())
            .await
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap();
        jwk["x"] = json!(attacker.public_jwk().x);
        sqlx::query("UPDATE signing_keys SET public_jwk = $1")
            .bind(jwk.to_string())
            .execute(db.pool())
            .await
            .unwrap();
        let err = Issuer::open(IssuerConfig::new(ISSUER), &b.storage)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                portcullis_issuer::Error::Keys(
                    portcullis_issuer::keys::KeyStoreError::Corrupt { .. }
                )
            ),
            "[{}] {err}",
            b.name
        );
    }
}

#[tokio::test]
async fn a_grants_hourly_rate_caps_the_tokens_minted_from_it() {
    for b in backends().await {
        let app = open(&b).await;
        let agent = register(&app, "expense-agent").await;
        let details = json!([{"type": "mcp_tools", "tools": ["expenses/list_expenses"], "rate": {"per_hour": 2}}]);
        let (_, grant) = admin(
            &app,
            "/admin/grants",
            json!({"subject": "alice", "client_id": "expense-agent", "resources": [RESOURCE],
                   "authorization_details": details, "expires_in": 3600}),
        )
        .await;
        let grant_id = grant["id"].as_str().unwrap();
        let (_, minted) = admin(
            &app,
            &format!("/admin/grants/{grant_id}/subject-token"),
            json!({}),
        )
        .await;
        let w = World {
            app,
            agent,
            grant_id: grant_id.to_owned(),
            subject_token: minted["subject_token"].as_str().unwrap().to_owned(),
        };
        for _ in 0..2 {
            delegation(&w).await;
        }
        let actor = client_token(&w.app, &w.agent).await;
        let got = exchange(&w, &w.agent, &w.subject_token, &actor, &[]).await;
        assert_error(
            &b,
            got,
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
        );
    }
}
