//! Online password guessing is refused, on every backend: after five failures a user cannot
//! sign in for a while, on either sign-in form and even with the right password; after twenty
//! failures from one address, nobody can from there; others are not affected.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use portcullis_issuer::app;
use portcullis_issuer::throttle::{ADDRESS_LIMIT, USER_LIMIT};

use crate::browser::{Browser, PASSWORD, authorize_url, issuer_with_people, register_public};
use crate::support::*;

async fn issuer(backend: &Backend) -> Router {
    let issuer = issuer_with_people(backend, |_| {}).await;
    app(issuer.state().clone())
}

/// `POST /sign-in` as `username`, from `peer` when given.
async fn sign_in(app: &Router, username: &str, password: &str, peer: Option<&str>) -> StatusCode {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("username", username), ("password", password)])
        .finish();
    let mut request =
        Request::post("/sign-in").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(peer) = peer {
        request = request.extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    }
    send(app, request.body(Body::from(body)).unwrap()).await.0
}

#[tokio::test]
async fn a_user_with_too_many_failures_is_refused_on_both_forms_even_with_the_right_password() {
    for backend in backends().await {
        let name = backend.name;
        let app = issuer(&backend).await;
        for _ in 0..USER_LIMIT {
            assert_eq!(
                sign_in(&app, "alice", "guess-guess-guess", None).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            sign_in(&app, "alice", PASSWORD, None).await,
            StatusCode::TOO_MANY_REQUESTS,
            "[{name}] the right password does not help now"
        );
        assert_eq!(
            sign_in(&app, "bob", PASSWORD, None).await,
            StatusCode::SEE_OTHER,
            "[{name}]"
        );

        // The authorization flow's sign-in counts the same failures.
        let client_id = register_public(&app).await;
        let mut browser = Browser::new(&app);
        let start = browser.get(&authorize_url(&client_id, &[])).await;
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
        assert_eq!(
            page.status,
            StatusCode::TOO_MANY_REQUESTS,
            "[{name}] {}",
            page.body
        );
        assert!(page.body.contains("Too many failed sign-ins"));
    }
}

#[tokio::test]
async fn an_address_with_too_many_failures_is_refused_and_other_addresses_are_not() {
    for backend in backends().await {
        let name = backend.name;
        let app = issuer(&backend).await;
        for i in 0..ADDRESS_LIMIT {
            // Spread over names, so no user reaches its own limit.
            let who = format!("nobody-{i}");
            sign_in(&app, &who, "guess-guess-guess", Some("10.0.0.7:4000")).await;
        }
        assert_eq!(
            sign_in(&app, "bob", PASSWORD, Some("10.0.0.7:4001")).await,
            StatusCode::TOO_MANY_REQUESTS,
            "[{name}]"
        );
        assert_eq!(
            sign_in(&app, "bob", PASSWORD, Some("10.0.0.8:4000")).await,
            StatusCode::SEE_OTHER,
            "[{name}]"
        );
    }
}
