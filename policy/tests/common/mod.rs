//! A test issuer with fixed keys, and a way to sign arbitrary headers and payloads with them,
//! so tests can build exactly the hostile token they describe.
#![allow(dead_code, unreachable_pub)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use portcullis_policy::{ActorRule, Expected, JwkSet, KeySet, SigningKey, Verifier};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "https://gw.test/mcp/expenses";
/// Monday 2026-11-23 15:00 UTC.
pub const NOW: i64 = 1_795_446_000;
pub const ED_KID: &str = "test-ed25519";
pub const EC_KID: &str = "test-es256";
pub const ED_SEED: [u8; 32] = [0x11; 32];
pub const EC_SECRET: [u8; 32] = [0x22; 32];

pub fn ed_key() -> SigningKey {
    SigningKey::ed25519_from_seed(ED_KID, &ED_SEED).unwrap()
}

pub fn ec_key() -> SigningKey {
    SigningKey::es256_from_secret(EC_KID, &EC_SECRET).unwrap()
}

pub fn jwks() -> JwkSet {
    JwkSet {
        keys: vec![ed_key().public_jwk(), ec_key().public_jwk()],
    }
}

pub fn verifier() -> Verifier {
    Verifier::new(ISSUER, KeySet::from_jwks(&jwks()).unwrap())
}

pub fn expected() -> Expected<'static> {
    Expected {
        audience: AUDIENCE,
        now: NOW,
        actor: ActorRule::Required,
    }
}

pub fn header() -> Value {
    json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ED_KID})
}

pub fn grant_details() -> Value {
    json!([{
        "type": "mcp_tools",
        "tools": ["expenses/submit_expense", "expenses/list_expenses"],
        "limits": [
            {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500},
            {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]}
        ],
        "max_depth": 1
    }])
}

pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "nbf": NOW - 10,
        "iat": NOW - 10,
        "jti": "tok-1",
        "client_id": "expense-agent",
        "act": {"sub": "expense-agent"},
        "gid": "grant-1",
        "authorization_details": grant_details()
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs raw header and payload bytes with the fixed Ed25519 key.
pub fn sign_raw(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let key = ed25519_dalek::SigningKey::from_bytes(&ED_SEED);
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

pub fn sign_json(header: &Value, claims: &Value) -> String {
    sign_raw(
        &serde_json::to_vec(header).unwrap(),
        &serde_json::to_vec(claims).unwrap(),
    )
}

/// `claims()` with `edit` applied, signed with the default header.
pub fn token_with(edit: impl FnOnce(&mut Value)) -> String {
    let mut c = claims();
    edit(&mut c);
    sign_json(&header(), &c)
}

/// The default header with `edit` applied, over the default claims.
pub fn token_with_header(edit: impl FnOnce(&mut Value)) -> String {
    let mut h = header();
    edit(&mut h);
    sign_json(&h, &claims())
}
