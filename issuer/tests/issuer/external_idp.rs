//! Tokens from a trusted external identity provider as the subject of a first exchange.

use axum::Router;
use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_issuer::external_idp::TrustedIdp;
use portcullis_issuer::{Issuer, IssuerConfig, app};
use portcullis_policy::SigningKey;
use serde_json::{Value, json};

use crate::support::*;

const IDP: &str = "https://login.example/realms/acme";
const AUDIENCE: &str = "portcullis";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";

/// The provider's Ed25519 key, usable by jsonwebtoken (PKCS#8) and published as a JWK.
struct ProviderKey {
    seed: [u8; 32],
    kid: &'static str,
}

impl ProviderKey {
    fn sign(&self, claims: &Value, alg: Algorithm) -> String {
        let mut pkcs8 = hex_prefix();
        pkcs8.extend_from_slice(&self.seed);
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&pkcs8)).unwrap()
    }

    fn jwk(&self) -> Value {
        serde_json::to_value(
            SigningKey::ed25519_from_seed(self.kid, &self.seed)
                .unwrap()
                .public_jwk(),
        )
        .unwrap()
    }
}

/// The fixed PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 §7).
fn hex_prefix() -> Vec<u8> {
    vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ]
}

/// Serves the provider's JWKS on loopback.
async fn jwks_server(jwks: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/certs", listener.local_addr().unwrap());
    let router = Router::new().route(
        "/certs",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn id_token(key: &ProviderKey, overrides: Value) -> String {
    let now = portcullis_issuer::now();
    let mut claims = json!({"iss": IDP, "aud": AUDIENCE, "sub": "f81d4fae-7dec", "preferred_username": "alice",
                            "iat": now, "exp": now + 300});
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    key.sign(&claims, Algorithm::EdDSA)
}

#[tokio::test]
async fn a_user_signed_in_at_a_trusted_provider_delegates_through_their_grant() {
    let key = ProviderKey {
        seed: [3u8; 32],
        kid: "idp-key-1",
    };
    let jwks_uri = jwks_server(json!({"keys": [key.jwk()]})).await;
    for b in backends().await {
        let mut config = IssuerConfig::new(ISSUER);
        config.admin_token = Some(ADMIN.into());
        config.trusted_idps = vec![TrustedIdp {
            issuer: IDP.into(),
            jwks_uri: jwks_uri.clone(),
            audience: AUDIENCE.into(),
            user_claim: "preferred_username".into(),
            algorithms: vec!["EdDSA".into()],
        }];
        let issuer = Issuer::open(config, &b.storage).await.unwrap();
        let w = World {
            app: app(issuer.state().clone()),
            ..world(&b).await
        };
        let actor = client_token(&w.app, &w.agent).await;
        let exchange_with = |subject: String| {
            let (w, actor) = (&w, actor.clone());
            async move {
                let form = [
                    ("grant_type", EXCHANGE),
                    ("subject_token", subject.as_str()),
                    ("subject_token_type", ID_TOKEN),
                    ("actor_token", actor.as_str()),
                    ("actor_token_type", ACCESS),
                    ("resource", RESOURCE),
                ];
                token(&w.app, &w.agent, &form).await
            }
        };

        let (status, body) = exchange_with(id_token(&key, json!({}))).await;
        assert_eq!(status, StatusCode::OK, "[{}] {body}", b.name);
        let claims = decode(body["access_token"].as_str().unwrap());
        assert_eq!(
            claims["sub"], "alice",
            "the user comes from the configured claim"
        );
        assert_eq!(
            claims["gid"],
            w.grant_id.as_str(),
            "the authority comes from her grant"
        );

        // Refused: another audience, an expired token, another issuer, a forged signature,
        // a user who gave this agent nothing, an HMAC algorithm.
        let stranger = ProviderKey {
            seed: [4u8; 32],
            kid: "idp-key-1",
        };
        let now = portcullis_issuer::now();
        for (subject, code, why) in [
            (id_token(&key, json!({"aud": "another-app"})), "invalid_request", "audience"),
            (id_token(&key, json!({"exp": now - 120})), "invalid_request", "expired"),
            (id_token(&stranger, json!({})), "invalid_request", "forged"),
            (id_token(&key, json!({"preferred_username": "mallory"})), "invalid_grant", "no grant"),
            (id_token(&key, json!({"preferred_username": ""})), "invalid_request", "no user"),
            (id_token(&key, json!({"iss": "https://login.example/realms/other"})), "invalid_request", "untrusted issuer"),
            (
                jsonwebtoken::encode(
                    &Header { kid: Some("idp-key-1".into()), ..Header::new(Algorithm::HS256) },
                    &json!({"iss": IDP, "aud": AUDIENCE, "preferred_username": "alice", "exp": now + 300}),
                    &EncodingKey::from_secret(b"guessable"),
                )
                .unwrap(),
                "invalid_request",
                "HS256",
            ),
        ] {
            let got = exchange_with(subject).await;
            assert_eq!(got.1["error"], code, "[{}] {why}: {}", b.name, got.1);
        }

        // Revoking alice at the issuer ends delegation from her external sign-in too.
        let (status, _) = revoke(&w.app, "user", "alice").await;
        assert_eq!(status, StatusCode::CREATED);
        let got = exchange_with(id_token(&key, json!({}))).await;
        assert_eq!(got.1["error"], "invalid_grant", "[{}] {}", b.name, got.1);
    }
}
