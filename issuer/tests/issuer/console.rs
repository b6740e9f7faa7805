//! The operator console on every backend: only signed-in operators see it; it shows the
//! authority graph and the decisions gateways ship, live over SSE and filtered; its forms
//! freeze, lift and revoke, with the session's form token.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use portcullis_issuer::{freezes, users};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::browser::{Browser, issuer_with_people};
use crate::support::*;

const GATEWAY: &str = "gateway-token-for-tests-only";

async fn signed_in(app: &Router, who: &str) -> Browser {
    Browser::signed_in(app, who, "/console").await
}

/// A gateway ships one decision of `user` under `grant`.
async fn ship(app: &Router, seq: i64, user: &str, grant: &str, decision: &str, rule: &str) {
    let batch = json!({"gateway": "gw-1", "events": [{
        "seq": seq, "at": portcullis_issuer::now(), "decision": decision, "sub": user,
        "act": ["expense-agent"], "gid": grant, "jti": "j", "upstream": "expenses",
        "method": "tools/call", "target": "expenses/submit_expense", "rule": rule}]});
    let request = Request::post("/audit/decisions")
        .header(header::AUTHORIZATION, format!("Bearer {GATEWAY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(batch.to_string()))
        .unwrap();
    assert_eq!(send(app, request).await.0, StatusCode::OK);
}

/// The console's event stream as `browser` opens it, read line by line.
struct Lines {
    body: Body,
    buffer: String,
}

impl Lines {
    async fn open(app: &Router, browser: &Browser, query: &str) -> Self {
        let request = Request::get(format!("/console/events?{query}"))
            .header(header::COOKIE, browser.cookie.clone().unwrap())
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next line, or `None` within 3 seconds.
    async fn next(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Some(serde_json::from_str(data.trim()).unwrap());
                }
                continue;
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

#[tokio::test]
async fn only_operators_see_the_console_which_streams_decisions_live_and_acts_with_its_forms() {
    for backend in backends().await {
        let name = backend.name;
        let issuer =
            issuer_with_people(&backend, |c| c.audit_ingest_token = Some(GATEWAY.into())).await;
        let db = issuer.state().db.clone();
        let app = portcullis_issuer::app(issuer.state().clone());
        let world = world_in(app.clone()).await;
        delegation(&world).await;
        users::set_operator(&db, "bob", true, portcullis_issuer::now())
            .await
            .unwrap();

        let away = Browser::new(&app).get("/console").await;
        assert_eq!(away.status, StatusCode::SEE_OTHER, "[{name}]");
        assert!(
            away.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .starts_with("/sign-in")
        );
        let mut alice = signed_in(&app, "alice").await;
        assert_eq!(
            alice.get("/console").await.status,
            StatusCode::FORBIDDEN,
            "[{name}]"
        );
        let events = Request::get("/console/events")
            .header(header::COOKIE, alice.cookie.clone().unwrap())
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            app.clone().oneshot(events).await.unwrap().status(),
            StatusCode::FORBIDDEN
        );

        let mut bob = signed_in(&app, "bob").await;
        let page = bob.get("/console").await;
        assert_eq!(page.status, StatusCode::OK, "[{name}] {}", page.body);
        let csp = page.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self';"),
            "only the issuer's own script: {csp}"
        );
        assert!(!page.body.contains("<script>"), "[{name}] no inline script");
        assert!(
            page.body.contains(&format!("grant-{}", world.grant_id)),
            "[{name}] the graph"
        );
        assert!(page.body.contains("<b>alice</b>"), "[{name}]");

        // Lines arrive live, filtered by user and outcome.
        let head = page
            .body
            .split("data-head=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let mut all = Lines::open(&app, &bob, &format!("after={head}")).await;
        let mut denials =
            Lines::open(&app, &bob, &format!("after={head}&outcome=deny&user=alice")).await;
        ship(&app, 1, "alice", &world.grant_id, "allow", "permit").await;
        ship(
            &app,
            2,
            "alice",
            &world.grant_id,
            "deny",
            "tool_not_granted",
        )
        .await;
        let first = all.next().await.expect("a line");
        assert_eq!(
            (
                &first["outcome"],
                &first["user"],
                &first["upstream"],
                &first["agents"]
            ),
            (
                &json!("allow"),
                &json!("alice"),
                &json!("expenses"),
                &json!(["expense-agent"])
            ),
            "[{name}] {first}"
        );
        assert_eq!(all.next().await.expect("a second line")["outcome"], "deny");
        let denied = denials.next().await.expect("the denial");
        assert_eq!(denied["detail"], "tool_not_granted", "[{name}] {denied}");
        assert_eq!(denied["what"], "expenses/submit_expense");

        // The forms act, and need the session's token.
        let token = page.field("form_token");
        let forged = bob
            .post(
                "/console/freezes",
                &[
                    ("pattern", "expenses/*"),
                    ("reason", "x"),
                    ("form_token", "forged"),
                ],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "[{name}]");
        let frozen = bob
            .post(
                "/console/freezes",
                &[
                    ("pattern", "expenses/submit_*"),
                    ("reason", "audit week"),
                    ("form_token", &token),
                ],
            )
            .await;
        assert_eq!(
            frozen.status,
            StatusCode::SEE_OTHER,
            "[{name}] {}",
            frozen.body
        );
        let listed = freezes::list(&db).await.unwrap();
        assert_eq!(listed[0].pattern.as_str(), "expenses/submit_*");
        assert_eq!(
            listed[0].created_by, "bob",
            "[{name}] audited with the operator's name"
        );
        let line = all.next().await.expect("the freeze's line");
        assert_eq!(
            (&line["outcome"], &line["what"]),
            (&json!("frozen"), &json!("expenses/submit_*"))
        );
        let shown = bob.get("/console").await;
        assert!(shown.body.contains("audit week"), "[{name}]");

        let revoked = bob
            .post(
                "/console/revoke",
                &[
                    ("kind", "grant"),
                    ("value", &world.grant_id),
                    ("form_token", &token),
                ],
            )
            .await;
        assert_eq!(
            revoked.status,
            StatusCode::SEE_OTHER,
            "[{name}] {}",
            revoked.body
        );
        let line = all.next().await.expect("the revocation's line");
        assert_eq!(line["outcome"], "revoked", "[{name}] {line}");
        assert!(
            line["detail"]
                .as_str()
                .unwrap()
                .contains("by bob from the console")
        );
        let bad = bob
            .post(
                "/console/revoke",
                &[("kind", "token"), ("value", "x"), ("form_token", &token)],
            )
            .await;
        assert_eq!(
            bad.status,
            StatusCode::BAD_REQUEST,
            "[{name}] tokens are revoked elsewhere"
        );

        let lifted = bob
            .post(
                "/console/freezes/lift",
                &[("pattern", "expenses/submit_*"), ("form_token", &token)],
            )
            .await;
        assert_eq!(lifted.status, StatusCode::SEE_OTHER, "[{name}]");
        assert!(freezes::list(&db).await.unwrap().is_empty());

        // Taking the role away closes the console at the next request.
        users::set_operator(&db, "bob", false, portcullis_issuer::now())
            .await
            .unwrap();
        assert_eq!(
            bob.get("/console").await.status,
            StatusCode::FORBIDDEN,
            "[{name}]"
        );
    }
}

#[tokio::test]
async fn a_console_on_one_replica_shows_what_gateways_shipped_to_another() {
    for backend in backends().await {
        let name = backend.name;
        let ingest =
            |c: &mut portcullis_issuer::IssuerConfig| c.audit_ingest_token = Some(GATEWAY.into());
        let first = issuer_with_people(&backend, ingest).await;
        users::set_operator(&first.state().db, "bob", true, portcullis_issuer::now())
            .await
            .unwrap();
        let second = open_issuer_with(&backend, ingest).await;
        let (a, b) = (
            portcullis_issuer::app(first.state().clone()),
            portcullis_issuer::app(second.state().clone()),
        );
        // Signed in at one replica, watching at the other: sessions live in the database.
        let bob = signed_in(&a, "bob").await;
        let mut lines = Lines::open(&b, &bob, "outcome=deny").await;
        ship(&a, 1, "alice", "gr_elsewhere", "deny", "limit_max").await;
        let line = lines
            .next()
            .await
            .unwrap_or_else(|| panic!("[{name}] no line at b"));
        assert_eq!(
            (&line["user"], &line["detail"]),
            (&json!("alice"), &json!("limit_max"))
        );
    }
}
