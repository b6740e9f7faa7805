//! Revocation: durable, visible at introspection, in the signed feed, and on the push stream.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use portcullis_policy::revocation::{RevocationKind, target_hash, verify_feed};
use serde_json::json;
use tower::ServiceExt;

use crate::support::*;

async fn sub_agent_token(w: &World, parent: &str) -> String {
    let sub = register(&w.app, "receipts-agent").await;
    let actor = client_token(&w.app, &sub).await;
    let (status, body) = exchange(w, &w.agent, parent, &actor, &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn revoking_a_root_grant_makes_every_descendant_inactive_and_lists_it_in_the_feed() {
    for b in backends().await {
        let w = world(&b).await;
        let parent = delegation(&w).await;
        let child = sub_agent_token(&w, &parent).await;
        for token in [&parent, &child, &w.subject_token] {
            assert_eq!(
                introspect(&w.app, &w.agent, token).await["active"],
                true,
                "[{}]",
                b.name
            );
        }

        let (status, entry) = revoke(&w.app, "grant", &w.grant_id).await;
        assert_eq!(status, StatusCode::CREATED, "[{}] {entry}", b.name);

        for token in [&parent, &child, &w.subject_token] {
            assert_eq!(
                introspect(&w.app, &w.agent, token).await,
                json!({"active": false}),
                "[{}]",
                b.name
            );
        }
        // Nothing more is issued from the grant either.
        let actor = client_token(&w.app, &w.agent).await;
        let got = exchange(&w, &w.agent, &w.subject_token, &actor, &[]).await;
        assert_error(&b, got, StatusCode::BAD_REQUEST, "invalid_grant");

        let response = w
            .app
            .clone()
            .oneshot(
                Request::get("/.well-known/revoked")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let jws = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let feed =
            verify_feed(&jws, &verifier(&w.app).await, portcullis_issuer::now(), 60).unwrap();
        assert_eq!(feed.version, entry["seq"].as_i64().unwrap());
        assert!(
            feed.entries
                .iter()
                .any(|e| e.target == target_hash(RevocationKind::Grant, &w.grant_id))
        );
        assert!(
            !jws.contains(&w.grant_id),
            "the feed names hashes, not values"
        );
    }
}

#[tokio::test]
async fn a_client_revokes_its_own_token_but_not_anothers() {
    for b in backends().await {
        let w = world(&b).await;
        let token = delegation(&w).await;
        let other = register(&w.app, "other-agent").await;
        let (status, body) = token_form(&w.app, "/revoke", &other, &[("token", &token)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "[{}] {body}", b.name);
        assert_eq!(body["error"], "unauthorized_client");
        assert_eq!(introspect(&w.app, &w.agent, &token).await["active"], true);

        let (status, _) = token_form(&w.app, "/revoke", &w.agent, &[("token", &token)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(introspect(&w.app, &w.agent, &token).await["active"], false);

        // Unknown or garbage tokens: 200, nothing to do (RFC 7009 §2.2).
        let (status, _) = token_form(&w.app, "/revoke", &w.agent, &[("token", "garbage")]).await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn introspection_requires_client_authentication() {
    for b in backends().await {
        let w = world(&b).await;
        let token = delegation(&w).await;
        let (status, body) = token_form(
            &w.app,
            "/introspect",
            &("nobody".into(), "x".into()),
            &[("token", &token)],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "[{}] {body}", b.name);
        let active = introspect(&w.app, &w.agent, &token).await;
        assert_eq!(active["sub"], "alice");
        assert_eq!(active["act"], json!({"sub": "expense-agent"}));
    }
}

#[tokio::test]
async fn a_revoked_agent_can_neither_authenticate_nor_use_its_tokens() {
    for b in backends().await {
        let w = world(&b).await;
        let delegated = delegation(&w).await;
        let (status, _) = revoke(&w.app, "agent", "expense-agent").await;
        assert_eq!(status, StatusCode::CREATED);
        let got = token(&w.app, &w.agent, &[("grant_type", "client_credentials")]).await;
        assert_error(&b, got, StatusCode::UNAUTHORIZED, "invalid_client");
        let observer = register(&w.app, "observer").await;
        assert_eq!(
            introspect(&w.app, &observer, &delegated).await["active"],
            false,
            "[{}]",
            b.name
        );
    }
}

#[tokio::test]
async fn revoking_an_unknown_grant_or_agent_is_an_error() {
    for b in backends().await {
        let app = open(&b).await;
        assert_eq!(
            revoke(&app, "grant", "gr_nope").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            revoke(&app, "agent", "nobody").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(revoke(&app, "planet", "x").await.0, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn the_push_stream_resumes_after_a_disconnect_without_missing_an_event() {
    for b in backends().await {
        let app = open(&b).await;
        let (_, first) = revoke(&app, "token", "jti-1").await;
        let mut stream = EventStream::open(&app, None).await;
        assert_eq!(
            stream.next().await.unwrap().0,
            first["seq"].as_i64().unwrap(),
            "[{}] backlog",
            b.name
        );
        let (_, second) = revoke(&app, "token", "jti-2").await;
        let (seq, entry) = stream.next().await.expect("a live event");
        assert_eq!(seq, second["seq"].as_i64().unwrap());
        assert_eq!(entry["target"], target_hash(RevocationKind::Token, "jti-2"));
        drop(stream);

        // Revocations made while the subscriber is away are replayed, in order, on resume.
        let (_, third) = revoke(&app, "user", "mallory").await;
        let (_, fourth) = revoke(&app, "session", "sess-9").await;
        let mut resumed = EventStream::open(&app, Some(seq)).await;
        assert_eq!(
            resumed.next().await.unwrap().0,
            third["seq"].as_i64().unwrap()
        );
        assert_eq!(
            resumed.next().await.unwrap().0,
            fourth["seq"].as_i64().unwrap()
        );
        let (_, fifth) = revoke(&app, "token", "jti-5").await;
        assert_eq!(
            resumed.next().await.unwrap().0,
            fifth["seq"].as_i64().unwrap(),
            "[{}]",
            b.name
        );
    }
}

#[tokio::test]
async fn two_issuers_on_one_postgres_both_stream_a_revocation_made_on_either() {
    for b in backends()
        .await
        .into_iter()
        .filter(|b| b.name == "postgres")
    {
        let one = portcullis_issuer::app(open_issuer(&b).await.state().clone());
        let two = portcullis_issuer::app(open_issuer(&b).await.state().clone());
        let mut on_one = EventStream::open(&one, None).await;
        let mut on_two = EventStream::open(&two, None).await;

        let (_, made_on_one) = revoke(&one, "token", "jti-a").await;
        let (_, made_on_two) = revoke(&two, "token", "jti-b").await;
        for stream in [&mut on_one, &mut on_two] {
            assert_eq!(
                stream.next().await.unwrap().0,
                made_on_one["seq"].as_i64().unwrap()
            );
            assert_eq!(
                stream.next().await.unwrap().0,
                made_on_two["seq"].as_i64().unwrap()
            );
        }
    }
}

#[tokio::test]
async fn a_branch_names_a_sub_agent_of_an_existing_grant() {
    for b in backends().await {
        let name = b.name;
        let w = world(&b).await;
        let own = format!("{}/expense-agent", w.grant_id);
        for (value, status) in [
            (own.as_str(), StatusCode::BAD_REQUEST),
            ("no-slash-here", StatusCode::BAD_REQUEST),
            ("gr_missing/helper", StatusCode::NOT_FOUND),
        ] {
            let (got, body) = revoke(&w.app, "branch", value).await;
            assert_eq!(got, status, "[{name}] {value}: {body}");
        }
        let branch = format!("{}/helper", w.grant_id);
        let (status, entry) = revoke(&w.app, "branch", &branch).await;
        assert_eq!(status, StatusCode::CREATED, "[{name}] {entry}");
        assert_eq!(entry["kind"], "branch");
    }
}
