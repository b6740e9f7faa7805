//! Key rotation: the old key stays published, a running issuer picks up a rotation made by
//! another process, and pruning removes only keys no valid token can need.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use portcullis_issuer::keys::{self, KeyEncryption};
use serde_json::Value;

use crate::support::*;

fn sealing(b: &Backend) -> KeyEncryption {
    match &b.storage.key_encryption_secret {
        Some(secret) => KeyEncryption::from_secret(secret).unwrap(),
        None => KeyEncryption::development(&b.storage.data_dir).unwrap(),
    }
}

async fn kids(app: &axum::Router) -> Vec<String> {
    let (_, jwks) = send(
        app,
        Request::get("/.well-known/jwks.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
}

#[tokio::test]
async fn a_running_issuer_picks_up_a_rotation_made_elsewhere_and_keeps_the_old_key_published() {
    for b in backends().await {
        let w = world(&b).await;
        let before = delegation(&w).await;
        let old_kids = kids(&w.app).await;
        assert_eq!(old_kids.len(), 1);

        let db = portcullis_issuer::open_database(&b.storage).await.unwrap();
        let new_kid = keys::rotate(&db, &sealing(&b), portcullis_issuer::now())
            .await
            .unwrap();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !kids(&w.app).await.contains(&new_kid) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "[{}] rotation not picked up",
                b.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            kids(&w.app).await.contains(&old_kids[0]),
            "the old key stays published"
        );

        let after = delegation(&w).await;
        let header = |token: &str| -> Value {
            use base64::Engine;
            let part = token.split('.').next().unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(header(&after)["kid"], new_kid.as_str(), "[{}]", b.name);
        assert_eq!(header(&before)["kid"], old_kids[0].as_str());
        // Both verify against the published set.
        assert_eq!(introspect(&w.app, &w.agent, &before).await["active"], true);
        assert_eq!(introspect(&w.app, &w.agent, &after).await["active"], true);

        // Pruning with the default window keeps the just-retired key; with none it goes.
        let now = portcullis_issuer::now();
        assert!(keys::prune(&db, now - 3600, now).await.unwrap().is_empty());
        assert_eq!(
            keys::prune(&db, now + 1, now).await.unwrap(),
            [old_kids[0].clone()]
        );
    }
}
