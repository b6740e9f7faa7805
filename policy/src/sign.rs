//! Signing claims into a compact JWS with `typ: at+jwt` (RFC 9068), and other payloads (the
//! revocation feed) under their own `typ`, so no document can pass for another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::claims::{Claims, RawClaims};
use crate::key::SigningKey;

/// The JOSE `typ` of every token Portcullis signs and accepts (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` with `key` into a compact JWS.
pub fn sign(claims: &Claims, key: &SigningKey) -> String {
    // Plain data structures: serialisation cannot fail.
    let payload = serde_json::to_vec(&RawClaims::from(claims)).expect("claims serialise");
    sign_payload(&payload, TOKEN_TYPE, key)
}

/// Signs an RFC 7523 client assertion (`private_key_jwt`): `iss` = `sub` = `client_id`,
/// `aud` = the issuer's token endpoint, living `lifetime` seconds from `now`, with a unique
/// `jti` (issuers refuse a replayed one).
pub fn sign_client_assertion(
    client_id: &str,
    audience: &str,
    key: &SigningKey,
    now: i64,
    lifetime: i64,
    jti: &str,
) -> String {
    let payload = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": audience,
        "iat": now, "exp": now + lifetime, "jti": jti,
    });
    sign_payload(payload.to_string().as_bytes(), "JWT", key)
}

/// Signs any JSON payload as a compact JWS of type `typ`.
pub(crate) fn sign_payload(payload: &[u8], typ: &str, key: &SigningKey) -> String {
    let header = Header {
        alg: key.algorithm().as_str(),
        typ,
        kid: key.kid(),
    };
    let header = serde_json::to_vec(&header).expect("header serialises");
    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}
