//! What the fuzz targets share: the golden test keys (`policy/testdata/golden.json`), so the
//! golden tokens in the seed corpora verify, a verifier over them, raw signing with the
//! crypto crates themselves (not through `policy`, so a target can check the verifier against
//! an independent signer), and verified tokens carrying a given `authorization_details` entry.
//!
//! Every target caps its input ([`MAX_INPUT`] unless it says otherwise), as rustls' targets
//! do: larger inputs only slow the fuzzer down without reaching new code.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use portcullis_policy::{
    ActorRule, Claims, Expected, KeySet, RawClaims, SigningKey, VerifiedToken, Verifier, sign,
};
use serde_json::{Value, json};

/// The largest input a target reads; longer ones are skipped.
pub const MAX_INPUT: usize = 16 * 1024;

/// The golden vectors' clock, issuer and audience.
pub const NOW: i64 = 1_795_446_000;
/// The golden vectors' issuer.
pub const ISSUER: &str = "https://issuer.test";
/// The golden vectors' audience.
pub const AUDIENCE: &str = "https://gw.test/mcp/expenses";
/// The golden Ed25519 key's id and seed.
pub const ED_KID: &str = "test-ed25519";
const ED_SEED: [u8; 32] = [0x11; 32];
/// The golden P-256 key's id and secret.
pub const EC_KID: &str = "test-es256";
const EC_SECRET: [u8; 32] = [0x22; 32];

/// The golden keys, as `policy` holds them.
pub fn signing_keys() -> [SigningKey; 2] {
    [
        SigningKey::ed25519_from_seed(ED_KID, &ED_SEED).expect("valid seed"),
        SigningKey::es256_from_secret(EC_KID, &EC_SECRET).expect("valid scalar"),
    ]
}

/// A verifier trusting both golden keys, with the golden issuer.
pub fn verifier() -> Verifier {
    let mut keys = KeySet::default();
    for key in signing_keys() {
        keys.insert(key.verifying_key());
    }
    Verifier::new(ISSUER, keys)
}

/// What the golden tokens are checked against.
pub fn expected() -> Expected<'static> {
    Expected {
        audience: AUDIENCE,
        now: NOW,
        actor: ActorRule::Required,
    }
}

/// `base64url(header) "." base64url(payload)`: what a JWS signs.
pub fn signing_input(header: &[u8], payload: &[u8]) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

/// The signature of `input` by the golden key (P-256 when `ec`, else Ed25519), made with
/// `ed25519-dalek` and `p256` directly.
pub fn raw_signature(input: &[u8], ec: bool) -> Vec<u8> {
    if ec {
        let key = p256::ecdsa::SigningKey::from_slice(&EC_SECRET).expect("valid scalar");
        let signature: p256::ecdsa::Signature = key.sign(input);
        signature.to_bytes().to_vec()
    } else {
        let key = ed25519_dalek::SigningKey::from_bytes(&ED_SEED);
        key.sign(input).to_bytes().to_vec()
    }
}

/// Whether `signature` over `input` verifies under the golden key, checked by the crypto
/// crates directly (Ed25519 strictly, as the verifier does).
pub fn raw_verifies(input: &[u8], signature: &[u8], ec: bool) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    if ec {
        let key = p256::ecdsa::SigningKey::from_slice(&EC_SECRET).expect("valid scalar");
        p256::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|s| key.verifying_key().verify(input, &s).is_ok())
    } else {
        let key = ed25519_dalek::SigningKey::from_bytes(&ED_SEED);
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| key.verifying_key().verify_strict(input, &s).is_ok())
    }
}

/// A compact JWS of `header` and `payload` signed by a golden key.
pub fn sign_raw(header: &[u8], payload: &[u8], ec: bool) -> String {
    let input = signing_input(header, payload);
    let signature = URL_SAFE_NO_PAD.encode(raw_signature(input.as_bytes(), ec));
    format!("{input}.{signature}")
}

/// A token of alice through `expense-agent` carrying `detail` as its one
/// `authorization_details` entry, signed and verified by the real policy code.
pub fn verified_token(detail: Value) -> VerifiedToken {
    let claims: Claims = serde_json::from_value::<RawClaims>(json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": NOW + 300,
        "iat": NOW - 10,
        "jti": "tok-fuzz",
        "client_id": "expense-agent",
        "act": {"sub": "expense-agent"},
        "gid": "grant-fuzz",
        "authorization_details": [detail],
    }))
    .expect("claims read")
    .try_into()
    .expect("claims valid");
    let [ed, _] = signing_keys();
    verifier()
        .verify(&sign(&claims, &ed), &expected())
        .expect("the fixture token verifies")
}
