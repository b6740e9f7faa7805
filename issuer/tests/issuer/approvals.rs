//! Approvals at the issuer, on every backend: a gateway's question opens one request; a person
//! signs in and answers on the page; the approval is spent once, even when two gateways ask at
//! the same moment; revocation voids what is open; every step is in the audit chain.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use portcullis_issuer::{Issuer, app};
use serde_json::{Value, json};

use crate::browser::{Browser, PASSWORD, issuer_with_people};
use crate::support::*;

const GATEWAY: &str = "gateway-token-for-tests-only";

struct Approvals {
    issuer: Issuer,
    app: Router,
    grant_id: String,
}

async fn approvals(backend: &Backend) -> Approvals {
    let issuer = issuer_with_people(backend, |c| c.audit_ingest_token = Some(GATEWAY.into())).await;
    let app = app(issuer.state().clone());
    let world = world_in(app.clone()).await;
    Approvals {
        issuer,
        app,
        grant_id: world.grant_id,
    }
}

fn question(grant_id: &str, arguments: Value) -> Value {
    json!({"grant_id": grant_id, "token_id": "jti-1", "sub": "alice", "act": ["expense-agent"],
           "upstream": "expenses", "tool": "expenses/submit_expense", "arguments": arguments,
           "requirement": {"valid_for": 300}, "gateway": "gw-1"})
}

async fn ask(app: &Router, body: &Value) -> (StatusCode, Value) {
    let request = Request::post("/approvals")
        .header(header::AUTHORIZATION, format!("Bearer {GATEWAY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

async fn signed_in(app: &Router, who: &str) -> Browser {
    let mut browser = Browser::new(app);
    let page = browser
        .post(
            "/sign-in",
            &[("username", who), ("password", PASSWORD), ("next", "/")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    browser
}

async fn answer(browser: &mut Browser, id: &str, decision: &str) -> StatusCode {
    let page = browser.get(&format!("/approvals/{id}")).await;
    let token = page.field("form_token");
    let path = format!("/approvals/{id}");
    let form = [("form_token", token.as_str()), ("decision", decision)];
    browser.post(&path, &form).await.status
}

async fn audit_kinds(issuer: &Issuer) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM audit_events WHERE kind LIKE 'approval.%' ORDER BY seq")
        .fetch_all(issuer.state().db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_request_is_answered_on_the_page_and_spent_by_one_of_two_gateways_asking_at_once() {
    for backend in backends().await {
        let name = backend.name;
        let a = approvals(&backend).await;
        let call = question(&a.grant_id, json!({"amount": 300, "category": "travel"}));

        let (status, body) = ask(&a.app, &call).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("pending")),
            "[{name}] {body}"
        );
        let id = body["id"].as_str().unwrap().to_owned();
        assert_eq!(body["url"], format!("{ISSUER}/approvals/{id}"));
        // Asked again, in another key order: the same request.
        let reordered = question(&a.grant_id, json!({"category": "travel", "amount": 300}));
        assert_eq!(ask(&a.app, &reordered).await.1["id"], id.as_str());
        let unauthenticated = Request::post("/approvals").body(Body::from(call.to_string()));
        assert_eq!(
            send(&a.app, unauthenticated.unwrap()).await.0,
            StatusCode::UNAUTHORIZED
        );

        // The page sends a stranger to sign in, and brings them back.
        let mut browser = Browser::new(&a.app);
        let page = browser.get(&format!("/approvals/{id}")).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(
            page.headers[header::LOCATION],
            format!("/sign-in?next=/approvals/{id}")
        );
        let wrong = browser
            .post(
                "/sign-in",
                &[("username", "alice"), ("password", "nope-nope-nope")],
            )
            .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        let next = format!("/approvals/{id}");
        let back = browser
            .post(
                "/sign-in",
                &[
                    ("username", "alice"),
                    ("password", PASSWORD),
                    ("next", &next),
                ],
            )
            .await;
        assert_eq!(back.headers[header::LOCATION], format!("/approvals/{id}"));
        let cookie = back.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let page = browser.get(&format!("/approvals/{id}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            page.body.contains("&quot;amount&quot;: 300"),
            "{}",
            page.body
        );

        // A form without this session's token is refused; with it, the approval is given.
        let forged = browser
            .post(
                &format!("/approvals/{id}"),
                &[("form_token", "forged"), ("decision", "approve")],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
        assert_eq!(answer(&mut browser, &id, "approve").await, StatusCode::OK);

        let ((_, first), (_, second)) = tokio::join!(ask(&a.app, &call), ask(&a.app, &call));
        let spent: Vec<&Value> = [&first, &second]
            .into_iter()
            .filter(|answer| answer["status"] == "approved")
            .collect();
        assert_eq!(
            spent.len(),
            1,
            "[{name}] exactly one spends it: {first} {second}"
        );
        assert_eq!(spent[0]["id"], id.as_str());
        assert_eq!(
            ask(&a.app, &call).await.1["status"],
            "pending",
            "[{name}] spent once"
        );

        let kinds = audit_kinds(&a.issuer).await;
        assert_eq!(
            kinds[..3],
            ["approval.requested", "approval.approved", "approval.spent"],
            "[{name}]"
        );
        let verified = portcullis_issuer::audit::verify(
            &a.issuer.state().db,
            &backend.storage.key_encryption().unwrap().anchor_key(),
        )
        .await
        .unwrap();
        assert!(verified.first_break.is_none(), "[{name}] the chain holds");
    }
}

#[tokio::test]
async fn only_the_user_answers_a_plain_term_and_a_denial_is_remembered() {
    for backend in backends().await {
        let a = approvals(&backend).await;
        let call = question(&a.grant_id, json!({"amount": 250, "category": "meal"}));
        let id = ask(&a.app, &call).await.1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut bob = signed_in(&a.app, "bob").await;
        let page = bob.get(&format!("/approvals/{id}")).await;
        assert!(
            !page.body.contains("form_token"),
            "bob is offered nothing to answer"
        );
        let mut alice = signed_in(&a.app, "alice").await;
        assert_eq!(answer(&mut alice, &id, "deny").await, StatusCode::OK);
        let (_, denied) = ask(&a.app, &call).await;
        assert_eq!(
            (denied["status"].as_str(), denied["id"].as_str()),
            (Some("denied"), Some(id.as_str()))
        );
        assert!(
            audit_kinds(&a.issuer)
                .await
                .contains(&"approval.denied".to_owned())
        );
    }
}

#[tokio::test]
async fn revoking_the_grant_voids_what_is_open_and_unspent() {
    for backend in backends().await {
        let a = approvals(&backend).await;
        let approved_call = question(&a.grant_id, json!({"amount": 400, "category": "meal"}));
        let open_call = question(&a.grant_id, json!({"amount": 410, "category": "meal"}));
        let approved = ask(&a.app, &approved_call).await.1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let open = ask(&a.app, &open_call).await.1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut alice = signed_in(&a.app, "alice").await;
        assert_eq!(
            answer(&mut alice, &approved, "approve").await,
            StatusCode::OK
        );

        let (status, _) = admin(
            &a.app,
            "/admin/revocations",
            json!({"kind": "grant", "value": a.grant_id}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(ask(&a.app, &approved_call).await.1["status"], "void");
        for id in [&approved, &open] {
            let page = alice.get(&format!("/approvals/{id}")).await;
            assert!(page.body.contains("void") && !page.body.contains("form_token"));
        }
        assert!(
            audit_kinds(&a.issuer)
                .await
                .contains(&"approval.void".to_owned())
        );
    }
}

#[tokio::test]
async fn a_session_ends_on_sign_out_and_when_idle_and_hostile_arguments_stay_text() {
    for backend in backends().await {
        let a = approvals(&backend).await;
        let hostile = json!({"amount": 300, "category": "meal",
                             "note": "<script>alert(1)</script>\"><img src=x onerror=alert(2)>"});
        let id = ask(&a.app, &question(&a.grant_id, hostile)).await.1["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut alice = signed_in(&a.app, "alice").await;
        let page = alice.get(&format!("/approvals/{id}")).await;
        assert!(
            !page.body.contains("<script>") && !page.body.contains("<img"),
            "{}",
            page.body
        );
        assert!(page.body.contains("&lt;script&gt;"));

        let mut idle = signed_in(&a.app, "alice").await;
        sqlx::query("UPDATE sign_in_sessions SET last_seen_at = last_seen_at - 3600")
            .execute(a.issuer.state().db.pool())
            .await
            .unwrap();
        assert_eq!(
            idle.get(&format!("/approvals/{id}")).await.status,
            StatusCode::SEE_OTHER
        );

        let mut leaving = signed_in(&a.app, "alice").await;
        assert_eq!(
            leaving.get(&format!("/approvals/{id}")).await.status,
            StatusCode::OK
        );
        let cookie = leaving.cookie.clone();
        leaving.post("/sign-out", &[]).await;
        // The old cookie, replayed, opens nothing: the session is gone at the issuer.
        leaving.cookie = cookie;
        assert_eq!(
            leaving.get(&format!("/approvals/{id}")).await.status,
            StatusCode::SEE_OTHER
        );
    }
}
