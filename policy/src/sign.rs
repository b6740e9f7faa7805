//! Signing claims into a compact JWS with `typ: at+jwt` (RFC 9068).

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
    let header = Header {
        alg: key.algorithm().as_str(),
        typ: TOKEN_TYPE,
        kid: key.kid(),
    };
    // Both structs hold only strings, numbers and JSON values: serialisation cannot fail.
    let header = serde_json::to_vec(&header).expect("header serialises");
    let payload = serde_json::to_vec(&RawClaims::from(claims)).expect("claims serialise");
    let mut token = String::with_capacity((header.len() + payload.len()) * 4 / 3 + 100);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let signature = key.sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    token
}
