//! Criterion benchmarks of the policy hot path: verify, authorize, attenuate, sign, and DPoP
//! proofs.
//!
//! `verify/eddsa/jsonwebtoken` runs the same signature check through `jsonwebtoken` 11
//! (`rust_crypto`), side by side with ours, to keep the choice of a hand-built verifier honest.
//!
//! Run: `cargo bench -p portcullis-policy --bench policy`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_policy::{
    Action, Actor, ActorChain, ActorRule, Claims, Constraints, DelegationRequest, Expectation,
    Expected, JwkSet, KeySet, ProofRequest, SigningKey, Verifier, attenuate, authorize,
    create_proof, sign, verify_proof,
};
use serde_json::json;

const ISSUER: &str = "https://issuer.bench";
const AUDIENCE: &str = "https://gw.bench/mcp/expenses";
const NOW: i64 = 1_795_446_000;

fn constraints() -> Constraints {
    Constraints::from_authorization_details(&[json!({
        "type": "mcp_tools",
        "tools": ["expenses/submit_expense", "expenses/list_*"],
        "deny": ["expenses/delete_*"],
        "limits": [
            {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500},
            {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]}
        ],
        "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "19:00", "tz": "Europe/Berlin"}],
        "max_depth": 2
    })])
    .unwrap()
}

fn claims() -> Claims {
    Claims {
        issuer: ISSUER.into(),
        subject: "alice".into(),
        audience: vec![AUDIENCE.into()],
        expires_at: NOW + 300,
        not_before: Some(NOW - 1),
        issued_at: NOW - 1,
        token_id: "bench-token".into(),
        client_id: "expense-agent".into(),
        scope: None,
        actors: Some(ActorChain::new(Actor {
            sub: "expense-agent".into(),
        })),
        grant_id: Some("gr_bench".into()),
        confirmation: None,
        constraints: Some(constraints()),
    }
}

fn bench(c: &mut Criterion) {
    let ed = SigningKey::ed25519_from_seed("ed", &[1; 32]).unwrap();
    let ec = SigningKey::es256_from_secret("ec", &[2; 32]).unwrap();
    let jwks = JwkSet {
        keys: vec![ed.public_jwk(), ec.public_jwk()],
    };
    let verifier = Verifier::new(ISSUER, KeySet::from_jwks(&jwks).unwrap());
    let expected = Expected {
        audience: AUDIENCE,
        now: NOW,
        actor: ActorRule::Required,
    };
    let claims = claims();
    let ed_token = sign(&claims, &ed);
    let ec_token = sign(&claims, &ec);

    c.bench_function("sign/eddsa", |b| b.iter(|| sign(black_box(&claims), &ed)));
    c.bench_function("sign/es256", |b| b.iter(|| sign(black_box(&claims), &ec)));
    c.bench_function("verify/eddsa", |b| {
        b.iter(|| verifier.verify(black_box(&ed_token), &expected).unwrap())
    });
    c.bench_function("verify/es256", |b| {
        b.iter(|| verifier.verify(black_box(&ec_token), &expected).unwrap())
    });

    // The same EdDSA signature check done by jsonwebtoken, which decodes the key per call.
    let jwt_key = jsonwebtoken::DecodingKey::from_ed_components(&ed.public_jwk().x).unwrap();
    let (message, signature) = ed_token.rsplit_once('.').unwrap();
    c.bench_function("verify/eddsa/jsonwebtoken_signature_only", |b| {
        b.iter(|| {
            jsonwebtoken::crypto::verify(
                black_box(signature),
                message.as_bytes(),
                &jwt_key,
                jsonwebtoken::Algorithm::EdDSA,
            )
            .unwrap()
        })
    });

    let token = verifier.verify(&ed_token, &expected).unwrap();
    let allowed = json!({"amount": 120, "category": "travel"});
    let over = json!({"amount": 620, "category": "travel"});
    c.bench_function("authorize/permit", |b| {
        b.iter(|| {
            authorize(
                &token,
                black_box(&Action {
                    tool: "expenses/submit_expense",
                    arguments: &allowed,
                    at: NOW,
                    hints: None,
                }),
            )
        })
    });
    c.bench_function("authorize/deny_limit", |b| {
        b.iter(|| {
            authorize(
                &token,
                black_box(&Action {
                    tool: "expenses/submit_expense",
                    arguments: &over,
                    at: NOW,
                    hints: None,
                }),
            )
        })
    });

    let request = Constraints::from_authorization_details(&[json!({
        "type": "mcp_tools",
        "tools": ["expenses/submit_expense"],
        "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 100}],
        "windows": [{"days": ["mon"], "start": "09:00", "end": "12:00", "tz": "Europe/Berlin"}]
    })])
    .unwrap();
    c.bench_function("attenuate/redelegate", |b| {
        b.iter(|| {
            attenuate(
                black_box(&claims),
                DelegationRequest {
                    actor: Actor {
                        sub: "receipts-agent".into(),
                    },
                    audience: AUDIENCE.into(),
                    constraints: Some(request.clone()),
                    issued_at: NOW,
                    expires_at: NOW + 300,
                    confirmation: None,
                    token_id: "child".into(),
                },
            )
            .unwrap()
        })
    });
}

/// What a resource server pays per request for DPoP: one proof checked against the request
/// and the token it came with (and the client, for making one).
fn dpop(c: &mut Criterion) {
    let token = "eyJ.a-bound-access-token.sig";
    for (name, key) in [
        (
            "es256",
            SigningKey::es256_from_secret("agent", &[3; 32]).unwrap(),
        ),
        (
            "eddsa",
            SigningKey::ed25519_from_seed("agent", &[4; 32]).unwrap(),
        ),
    ] {
        let request = ProofRequest {
            method: "POST",
            url: AUDIENCE,
            access_token: Some(token),
            nonce: None,
            jti: "0123456789abcdef0123",
            issued_at: NOW,
        };
        let proof = create_proof(&key, &request);
        let expected = Expectation {
            method: "POST",
            url: AUDIENCE,
            access_token: Some(token),
            nonces: None,
            now: NOW,
            max_age: 60,
            leeway: 5,
        };
        c.bench_function(&format!("dpop/create_proof/{name}"), |b| {
            b.iter(|| create_proof(&key, black_box(&request)))
        });
        c.bench_function(&format!("dpop/verify_proof/{name}"), |b| {
            b.iter(|| verify_proof(black_box(&proof), &expected).unwrap())
        });
    }
}

criterion_group!(benches, bench, dpop);
criterion_main!(benches);
