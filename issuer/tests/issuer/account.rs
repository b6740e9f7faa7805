//! The account page, on every backend: a person sees their own grants in plain words and the
//! approvals waiting for them, and revokes a grant in one click; another person's grant is
//! neither shown nor revocable, and the form needs the session's token.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portcullis_issuer::app;
use portcullis_issuer::db::Database;
use serde_json::json;

use crate::browser::{Browser, issuer_with_people};
use crate::support::*;

const GATEWAY: &str = "gateway-token-for-tests-only";

async fn issuer(backend: &Backend) -> (Router, Database, String, String) {
    let issuer = issuer_with_people(backend, |c| c.audit_ingest_token = Some(GATEWAY.into())).await;
    let app = app(issuer.state().clone());
    let world = world_in(app.clone()).await;
    // The agent has acted under alice's grant once.
    delegation(&world).await;
    let alices = world.grant_id;
    let (status, bobs) = admin(
        &app,
        "/admin/grants",
        json!({"subject": "bob", "client_id": "expense-agent", "resources": [RESOURCE],
               "authorization_details": grant_details(), "expires_in": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let db = issuer.state().db.clone();
    (app, db, alices, bobs["id"].as_str().unwrap().to_owned())
}

async fn signed_in(app: &Router, who: &str) -> Browser {
    Browser::signed_in(app, who, "/account").await
}

#[tokio::test]
async fn a_person_sees_their_grants_and_waiting_approvals_and_revokes_one_in_one_click() {
    for backend in backends().await {
        let name = backend.name;
        let (app, db, alices, bobs) = issuer(&backend).await;
        // A call waiting for alice.
        let question = json!({"grant_id": alices, "token_id": "j", "sub": "alice",
            "act": ["expense-agent"], "upstream": "expenses", "tool": "expenses/submit_expense",
            "arguments": {"amount": 300}, "requirement": {"valid_for": 300}, "gateway": "gw"});
        let request = Request::post("/approvals")
            .header(header::AUTHORIZATION, format!("Bearer {GATEWAY}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(question.to_string()))
            .unwrap();
        let (_, pending) = send(&app, request).await;

        assert_eq!(
            Browser::new(&app).get("/account").await.status,
            StatusCode::SEE_OTHER
        );
        let mut alice = signed_in(&app, "alice").await;
        let page = alice.get("/account").await;
        assert_eq!(page.status, StatusCode::OK, "[{name}]");
        assert!(page.body.contains(&alices), "[{name}] her grant");
        assert!(!page.body.contains(&bobs), "[{name}] not bob's");
        assert!(
            page.body
                .contains("may call expenses/submit_expense with /amount ≤ 500")
        );
        assert!(
            page.body.contains("Acting under it"),
            "[{name}] the agents that used it"
        );
        assert!(
            !page.body.contains("<dd>never</dd>"),
            "[{name}] last used: the exchange"
        );
        assert!(
            page.body
                .contains(&format!("/approvals/{}", pending["id"].as_str().unwrap()))
        );

        // Bob's grant cannot be revoked by alice, nor hers without the form token.
        let token = page.field("form_token");
        let theirs = alice
            .post(
                &format!("/account/grants/{bobs}/revoke"),
                &[("form_token", &token)],
            )
            .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "[{name}]");
        let forged = alice
            .post(
                &format!("/account/grants/{alices}/revoke"),
                &[("form_token", "forged")],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "[{name}]");

        let revoked = alice
            .post(
                &format!("/account/grants/{alices}/revoke"),
                &[("form_token", &token)],
            )
            .await;
        assert_eq!(
            revoked.status,
            StatusCode::SEE_OTHER,
            "[{name}] {}",
            revoked.body
        );
        let after = alice.get(&format!("/account?revoked={alices}")).await;
        assert!(after.body.contains("is revoked"), "[{name}]");
        assert!(after.body.contains("Past grants (1)"), "[{name}]");
        assert!(
            !after.body.contains("/approvals/"),
            "[{name}] the waiting call is void"
        );
        // A revocation like an operator's, which gateways receive, naming who made it.
        let reason: String = sqlx::query_scalar(
            "SELECT reason FROM revocations WHERE kind = 'grant' AND value = $1",
        )
        .bind(&alices)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(reason, "revoked by alice on the account page", "[{name}]");
        let bob_revoked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM revocations WHERE value = $1")
                .bind(&bobs)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(bob_revoked, 0, "[{name}] bob's grant stands");
    }
}
