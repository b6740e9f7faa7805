//! The operator CLI beside a running issuer: what it keeps must cover what that issuer signs,
//! whatever lifetimes the issuer was started with.

use portcullis_issuer::keys::{self, KeyEncryption};
use serde_json::Value;

use crate::support::*;

/// `serve --delegation-ttl 7200`, as far as storage is concerned.
const LONG_TTL: i64 = 7200;

#[tokio::test]
async fn a_revocation_made_from_the_cli_outlives_every_token_it_covers() {
    for b in backends().await {
        let issuer = open_issuer_with(&b, |config| config.delegation_ttl = LONG_TTL).await;
        world_in(portcullis_issuer::app(issuer.state().clone())).await;
        // Tokens signed from now on may live LONG_TTL seconds (a delegation from a consent's
        // grant does): revoking their agent or user must outlast them.
        let covers = portcullis_issuer::now() + LONG_TTL;
        for target in [["--agent", "expense-agent"], ["--user", "alice"]] {
            let mut args = vec!["revoke"];
            args.extend(target);
            let entry: Value = serde_json::from_str(&cli(&b, &args).await).unwrap();
            assert!(
                entry["expires_at"].as_i64().unwrap() >= covers,
                "[{}] revoke {target:?} is kept until {}, but a token it covers may live until {covers}",
                b.name,
                entry["expires_at"],
            );
        }
    }
}

#[tokio::test]
async fn keys_pruned_from_the_cli_stay_while_a_token_they_signed_can_be_valid() {
    for b in backends().await {
        let issuer = open_issuer_with(&b, |config| config.delegation_ttl = LONG_TTL).await;
        let db = &issuer.state().db;
        let sealing = match &b.storage.key_encryption_secret {
            Some(secret) => KeyEncryption::from_secret(secret).unwrap(),
            None => KeyEncryption::development(&b.storage.data_dir).unwrap(),
        };
        let first = issuer.state().keys().active().kid().to_owned();
        let now = portcullis_issuer::now();
        let second = keys::rotate(db, &sealing, now).await.unwrap();
        keys::rotate(db, &sealing, now).await.unwrap();
        // The first stopped signing longer ago than any token lives; the second stopped
        // signing an hour and a bit ago, so its 7200-second tokens can still be valid.
        for (kid, retired) in [(&first, now - LONG_TTL - 600), (&second, now - 4000)] {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2")
                .bind(retired)
                .bind(kid)
                .execute(db.pool())
                .await
                .unwrap();
        }
        let pruned: Vec<String> = serde_json::from_str(&cli(&b, &["keys", "prune"]).await).unwrap();
        assert_eq!(pruned, [first], "[{}]", b.name);
    }
}

#[tokio::test]
async fn the_cli_offers_what_the_admin_api_does_freezes_revocations_filtered_grants_and_audit_queries()
 {
    for b in backends().await {
        let name = b.name;
        let issuer = open_issuer(&b).await;
        let world = world_in(portcullis_issuer::app(issuer.state().clone())).await;

        let set: Value = serde_json::from_str(
            &cli(
                &b,
                &["freezes", "set", "expenses/*", "--reason", "quarter close"],
            )
            .await,
        )
        .unwrap();
        assert_eq!(set["pattern"], "expenses/*", "{name}");
        assert!(set["created_by"].as_str().unwrap().ends_with("(CLI)"));
        let listed: Value = serde_json::from_str(&cli(&b, &["freezes", "list"]).await).unwrap();
        assert_eq!(listed[0]["reason"], "quarter close", "{name}");

        cli(&b, &["revoke", "--grant", &world.grant_id]).await;
        let revocations: Value =
            serde_json::from_str(&cli(&b, &["revocations", "list"]).await).unwrap();
        assert_eq!(
            revocations[0]["value"], world.grant_id,
            "{name}: {revocations}"
        );
        let revoked: Value =
            serde_json::from_str(&cli(&b, &["grants", "list", "--status", "revoked"]).await)
                .unwrap();
        assert_eq!(revoked.as_array().unwrap().len(), 1, "{name}");
        let active: Value = serde_json::from_str(
            &cli(
                &b,
                &["grants", "list", "--status", "active", "--user", "alice"],
            )
            .await,
        )
        .unwrap();
        assert!(active.as_array().unwrap().is_empty(), "{name}");

        let events: Value = serde_json::from_str(
            &cli(
                &b,
                &[
                    "audit",
                    "query",
                    "--grant",
                    &world.grant_id,
                    "--kind",
                    "revocation",
                ],
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            events["items"].as_array().unwrap().len(),
            1,
            "{name}: {events}"
        );
        cli(&b, &["freezes", "lift", "expenses/*"]).await;
        let listed: Value = serde_json::from_str(&cli(&b, &["freezes", "list"]).await).unwrap();
        assert_eq!(listed, serde_json::json!([]), "{name}");
    }
}
