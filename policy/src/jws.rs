//! What the two kinds of JWS this crate verifies share: tokens, whose key is named by `kid`
//! among the issuer's, and DPoP proofs, which carry their key in `jwk`. The compact
//! serialization is split one way, and a header member that would take the key from anywhere
//! else (or `crit`, which no verifier here honours) is refused the same way for both.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

/// The three parts of a compact JWS, still base64url.
pub(crate) struct Parts<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
}

impl<'a> Parts<'a> {
    /// Exactly three non-empty parts, or `None`.
    pub(crate) fn split(jws: &'a str) -> Option<Self> {
        let mut parts = jws.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return None;
        }
        Some(Self {
            header,
            payload,
            signature,
        })
    }

    /// The bytes the signature covers: `header.payload` of `jws`, which these parts split.
    pub(crate) fn signing_input<'j>(&self, jws: &'j str) -> &'j [u8] {
        &jws.as_bytes()[..self.header.len() + 1 + self.payload.len()]
    }
}

/// A part's bytes, if it is base64url without padding.
pub(crate) fn decode(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}

/// Where the verifier takes the key from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyFrom {
    /// `kid`, among keys the verifier already trusts.
    Kid,
    /// `jwk`, the key in the header itself (DPoP).
    Jwk,
}

/// A JWS header, as far as this crate reads one.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub(crate) alg: String,
    #[serde(default)]
    pub(crate) typ: Option<String>,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default)]
    pub(crate) jwk: Option<Value>,
    #[serde(default)]
    crit: Option<Value>,
    #[serde(default)]
    jku: Option<Value>,
    #[serde(default)]
    x5u: Option<Value>,
    #[serde(default)]
    x5c: Option<Value>,
}

impl Header {
    /// The first member present that this verifier never honours: `crit`, and every way of
    /// naming a key other than `from`.
    pub(crate) fn refused_member(&self, from: KeyFrom) -> Option<&'static str> {
        [
            (self.crit.is_some(), "crit"),
            (from != KeyFrom::Kid && self.kid.is_some(), "kid"),
            (self.jku.is_some(), "jku"),
            (from != KeyFrom::Jwk && self.jwk.is_some(), "jwk"),
            (self.x5u.is_some(), "x5u"),
            (self.x5c.is_some(), "x5c"),
        ]
        .into_iter()
        .find_map(|(present, name)| present.then_some(name))
    }
}
