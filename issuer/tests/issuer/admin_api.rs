//! The admin API on every backend: grants listed by user, agent and state a page at a time,
//! revoked through the API, the audit log queried and verified, people and the operator role,
//! change freezes pushed to gateways whole; all behind the admin token; and the OpenAPI
//! document that describes it.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};

use crate::support::*;

async fn get(app: &Router, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    send(app, request).await
}

/// A page's status and text.
async fn text(app: &Router, path: &str) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn put(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::put(path)
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    send(app, request).await
}

async fn grant_for(app: &Router, user: &str) -> String {
    let (status, grant) = admin(
        app,
        "/admin/grants",
        json!({"subject": user, "client_id": "expense-agent", "resources": [RESOURCE],
               "authorization_details": grant_details(), "expires_in": 3600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    grant["id"].as_str().unwrap().to_owned()
}

/// Every page of `path` (which has a query), following `next_cursor`.
async fn all_pages(app: &Router, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let (status, page) = get(app, &url).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn grants_are_listed_by_user_agent_and_state_a_page_at_a_time_and_revoked_through_the_api() {
    for backend in backends().await {
        let name = backend.name;
        let app = open(&backend).await;
        let world = world_in(app.clone()).await;
        let mut alices = vec![world.grant_id.clone()];
        for _ in 0..4 {
            alices.push(grant_for(&app, "alice").await);
        }
        let bobs = grant_for(&app, "bob").await;

        // Newest first, one at a time, each exactly once.
        let mut listed = ids(&all_pages(&app, "/admin/grants?user=alice&limit=2").await);
        assert_eq!(listed.len(), 5, "{name}: {listed:?}");
        listed.sort();
        alices.sort();
        assert_eq!(listed, alices, "{name}");
        let agents = all_pages(&app, "/admin/grants?agent=expense-agent&limit=500").await;
        assert_eq!(agents.len(), 6, "{name}");

        let (status, revoked) = admin(
            &app,
            &format!("/admin/grants/{bobs}/revoke"),
            json!({"reason": "bob left"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {revoked}");
        assert_eq!(revoked["kind"], "grant");
        assert_eq!(revoked["value"], bobs);
        assert_eq!(revoked["reason"], "bob left");
        let revoked_now = ids(&all_pages(&app, "/admin/grants?status=revoked").await);
        assert_eq!(revoked_now, std::slice::from_ref(&bobs), "{name}");
        let active = ids(&all_pages(&app, "/admin/grants?status=active&user=bob").await);
        assert!(active.is_empty(), "{name}");
        let (status, one) = get(&app, &format!("/admin/grants/{bobs}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(one["revoked_at"].is_i64(), "{name}: {one}");

        // The revocation log and the audit log say the same, and the chain holds.
        let (_, log) = get(&app, "/admin/revocations?limit=10").await;
        assert_eq!(log["items"][0]["value"], bobs, "{name}: {log}");
        let (status, events) =
            get(&app, &format!("/admin/audit?grant={bobs}&kind=revocation")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            events["items"].as_array().unwrap().len(),
            1,
            "{name}: {events}"
        );
        assert_eq!(events["items"][0]["data"]["reason"], "bob left");
        let (_, created) = get(&app, "/admin/audit?user=bob&kind=grant.created").await;
        assert_eq!(created["items"][0]["data"]["grant_id"], bobs, "{name}");
        let (status, report) = get(&app, "/admin/audit/verify").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(report["intact"], true, "{name}: {report}");

        // What is wrong is said, in the one error body.
        let (status, error) = get(&app, "/admin/grants/no-such-grant").await;
        assert_eq!(
            (status, error["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let (status, error) = get(&app, "/admin/grants?limit=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let (status, error) = get(&app, "/admin/grants?status=sleeping").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let (status, error) = get(&app, "/admin/grants?cursor=nonsense").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        let anonymous = Request::get("/admin/grants").body(Body::empty()).unwrap();
        assert_eq!(send(&app, anonymous).await.0, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn people_are_created_and_made_operators_and_freezes_reach_gateways_whole() {
    for backend in backends().await {
        let name = backend.name;
        let app = open(&backend).await;
        let (status, olivia) = admin(
            &app,
            "/admin/users",
            json!({"username": "olivia", "password": "a long enough password",
                   "resources": [RESOURCE], "authorization_details": grant_details(),
                   "operator": true}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {olivia}");
        assert_eq!(olivia["operator"], true);
        let (status, olivia) = put(
            &app,
            "/admin/users/olivia/operator",
            json!({"operator": false}),
        )
        .await;
        assert_eq!(
            (status, &olivia["operator"]),
            (StatusCode::OK, &json!(false)),
            "{name}"
        );
        let (status, _) = put(
            &app,
            "/admin/users/nobody/operator",
            json!({"operator": true}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, error) = admin(
            &app,
            "/admin/users",
            json!({"username": "short", "password": "short", "resources": [RESOURCE],
                   "authorization_details": grant_details()}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");

        // A gateway's stream says the freezes in force first, then each change, whole.
        let mut stream = EventStream::open(&app, None).await;
        assert_eq!(stream.next_freezes().await, Some(json!([])), "{name}");
        let (status, freeze) = admin(
            &app,
            "/admin/freezes",
            json!({"pattern": "expenses/*submit*", "reason": "month-end close"}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {freeze}");
        assert_eq!(freeze["created_by"], "admin API");
        assert_eq!(
            stream.next_freezes().await,
            Some(json!(["expenses/*submit*"])),
            "{name}"
        );
        let (status, _) = admin(
            &app,
            "/admin/freezes",
            json!({"pattern": "bad pattern!", "reason": "x"}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (_, listed) = get(&app, "/admin/freezes").await;
        assert_eq!(listed[0]["reason"], "month-end close", "{name}");
        // A gateway connecting now is told at once.
        let mut late = EventStream::open(&app, None).await;
        assert_eq!(
            late.next_freezes().await,
            Some(json!(["expenses/*submit*"])),
            "{name}"
        );

        let (status, _) = admin(
            &app,
            "/admin/freezes/lift",
            json!({"pattern": "expenses/*submit*"}),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(stream.next_freezes().await, Some(json!([])), "{name}");
        let (status, _) = admin(
            &app,
            "/admin/freezes/lift",
            json!({"pattern": "expenses/*submit*"}),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "lifting twice");
        let (_, events) = get(&app, "/admin/audit?kind=freeze.lifted").await;
        assert_eq!(
            events["items"][0]["data"]["pattern"], "expenses/*submit*",
            "{name}"
        );
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_admin_route_and_the_docs_are_served_without_a_cdn() {
    let backend = backends().await.remove(0);
    let app = open(&backend).await;
    let (status, document) = send(
        &app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/admin/users",
        "/admin/users/{username}",
        "/admin/clients",
        "/admin/grants",
        "/admin/grants/{id}",
        "/admin/grants/{id}/revoke",
        "/admin/revocations",
        "/admin/keys",
        "/admin/freezes",
        "/admin/upstreams",
        "/admin/audit",
        "/admin/audit/verify",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    let docs = text(&app, "/docs/").await;
    assert_eq!(docs.0, StatusCode::OK);
    assert!(docs.1.contains("swagger-ui"), "Swagger UI's page");
    assert!(
        !docs.1.contains("unpkg.com") && !docs.1.contains("cdn."),
        "no CDN"
    );
}
