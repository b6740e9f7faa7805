//! DPoP (RFC 9449): proof that the client presenting a token holds the private key the token
//! is bound to.
//!
//! A client makes a fresh proof for every request ([`create_proof`]): a JWS of type
//! `dpop+jwt`, signed with its key, carrying the public key (`jwk`), the request's method and
//! URL (`htm`, `htu`), a time (`iat`), a unique id (`jti`), and at a resource server the hash of
//! the access token (`ath`). A token bound to that key carries the key's RFC 7638 thumbprint in
//! `cnf.jkt` ([`thumbprint`]). [`verify_proof`] checks a proof with the strictness of token
//! verification: asymmetric algorithms only, a public key only, no header that points
//! elsewhere for a key, the method, the URL (normalised per RFC 9449 §4.3), the time window,
//! the token hash and the nonce. That a `jti` is seen once is the caller's to enforce (it is
//! state), for the window [`Expectation::max_age`] plus leeway; the verified [`Proof`] gives it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::jws::{self, Header, KeyFrom, Parts};
use crate::key::{Algorithm, Jwk, SigningKey, VerifyingKey};
use crate::strict_json;

/// The `typ` of a proof.
pub const PROOF_TYPE: &str = "dpop+jwt";
/// The algorithms a proof may be signed with (`dpop_signing_alg_values_supported`).
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::Es256, Algorithm::EdDsa];
/// The longest proof accepted: a header with a P-256 key, the claims and a signature take
/// well under 1 KiB.
pub const MAX_PROOF_LEN: usize = 4096;
/// The longest `jti` accepted (RFC 9449 asks for at least 96 bits of randomness).
pub const MAX_JTI_LEN: usize = 256;
/// The longest `nonce` accepted.
const MAX_NONCE_LEN: usize = 256;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// A token presented with the DPoP scheme and no `DPoP` header.
    #[error("no DPoP proof came with the token")]
    Missing,
    /// Longer than [`MAX_PROOF_LEN`].
    #[error("the proof is longer than {MAX_PROOF_LEN} bytes")]
    Oversized,
    /// Not three base64url parts, or a part that does not decode.
    #[error("the proof is not a compact JWS")]
    Malformed,
    /// The header is not valid JSON of the expected shape.
    #[error("bad proof header: {0}")]
    BadHeader(String),
    /// `typ` is not `dpop+jwt`.
    #[error("the proof's typ is {0:?}, not dpop+jwt")]
    WrongType(Option<String>),
    /// `alg` is not an asymmetric algorithm this crate verifies.
    #[error("algorithm {0:?} is not allowed for proofs")]
    DisallowedAlgorithm(String),
    /// A header member that names a key elsewhere, or `crit`.
    #[error("unsupported proof header member {0:?}")]
    UnsupportedHeader(&'static str),
    /// The `jwk` holds a private key.
    #[error("the proof's jwk holds a private key")]
    PrivateKey,
    /// The `jwk` is not a usable public key of the proof's algorithm.
    #[error("bad proof jwk: {0}")]
    BadKey(String),
    /// The signature does not verify with the proof's own key.
    #[error("bad proof signature")]
    BadSignature,
    /// The claims are not valid JSON of the expected shape.
    #[error("bad proof claims: {0}")]
    BadClaims(String),
    /// `htm` is not the request's method.
    #[error("the proof is for method {got:?}, not {expected:?}")]
    WrongMethod {
        /// The request's method.
        expected: String,
        /// The proof's.
        got: String,
    },
    /// `htu` is not the request's URL.
    #[error("the proof is for {got:?}, not {expected:?}")]
    WrongUrl {
        /// The request's URL, normalised.
        expected: String,
        /// The proof's, as written.
        got: String,
    },
    /// `iat` is ahead of the clock by more than the leeway.
    #[error("the proof was issued in the future (iat {iat}, now {now})")]
    IssuedInFuture {
        /// The proof's `iat`.
        iat: i64,
        /// Now.
        now: i64,
    },
    /// `iat` is older than the window.
    #[error("the proof is too old (iat {iat}, now {now})")]
    Stale {
        /// The proof's `iat`.
        iat: i64,
        /// Now.
        now: i64,
    },
    /// A proof presented with an access token lacks `ath`.
    #[error("the proof has no ath for the access token")]
    MissingTokenHash,
    /// `ath` is not the hash of the access token presented (or one was given without a token).
    #[error("the proof's ath is not the hash of the access token presented")]
    WrongTokenHash,
    /// The server requires a nonce and the proof lacks it or has another.
    #[error("the proof does not carry the server's current nonce")]
    WrongNonce,
    /// The proof's key is not the one the token is bound to.
    #[error("the proof is signed by another key than the token is bound to")]
    WrongKey,
    /// The `jti` was seen before within the window.
    #[error("the proof was used before")]
    Replayed,
}

impl DpopError {
    /// A short machine-readable reason, for logs, metrics and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DpopError::Missing => "proof_missing",
            DpopError::Oversized | DpopError::Malformed => "proof_malformed",
            DpopError::BadHeader(_)
            | DpopError::WrongType(_)
            | DpopError::UnsupportedHeader(_)
            | DpopError::BadClaims(_) => "proof_invalid",
            DpopError::DisallowedAlgorithm(_) => "proof_algorithm",
            DpopError::PrivateKey | DpopError::BadKey(_) => "proof_key",
            DpopError::BadSignature => "proof_signature",
            DpopError::WrongMethod { .. } => "proof_method",
            DpopError::WrongUrl { .. } => "proof_url",
            DpopError::IssuedInFuture { .. } | DpopError::Stale { .. } => "proof_time",
            DpopError::MissingTokenHash | DpopError::WrongTokenHash => "proof_token_hash",
            DpopError::WrongNonce => "use_dpop_nonce",
            DpopError::WrongKey => "proof_key_mismatch",
            DpopError::Replayed => "proof_replayed",
        }
    }
}

/// What the request the proof came with was, and what the server asks of proofs.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The URL the request was made to, as the server publishes it.
    pub url: &'a str,
    /// The access token presented with the proof (at a resource server); `None` at a token
    /// endpoint, where a proof must not carry `ath`.
    pub access_token: Option<&'a str>,
    /// The nonces the server accepts now (say, the current and the previous one), if it
    /// requires one; `None`: no nonce is required.
    pub nonces: Option<&'a [String]>,
    /// Now, Unix seconds.
    pub now: i64,
    /// How old a proof may be, in seconds.
    pub max_age: i64,
    /// Allowed clock skew, in seconds, both ways.
    pub leeway: i64,
}

/// A proof that passed [`verify_proof`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the proof's key: what `cnf.jkt` names.
    pub thumbprint: String,
    /// The proof's id, to be seen once within the window.
    pub jti: String,
    /// When it was made, Unix seconds.
    pub issued_at: i64,
}

/// The public members of a proof's `jwk`; any private member refuses the key.
#[derive(Deserialize)]
struct ProofJwk {
    kty: String,
    #[serde(default)]
    crv: String,
    #[serde(default)]
    x: String,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    d: Option<Value>,
    #[serde(default)]
    alg: Option<String>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

fn decode_part(part: &str) -> Result<Vec<u8>, DpopError> {
    jws::decode(part).ok_or(DpopError::Malformed)
}

/// Checks `proof` against what the request was; see the module docs for what is checked.
pub fn verify_proof(proof: &str, expected: &Expectation<'_>) -> Result<Proof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::Oversized);
    }
    let parts = Parts::split(proof).ok_or(DpopError::Malformed)?;
    let header: Header = strict_json::from_slice_to(&decode_part(parts.header)?)
        .map_err(|e| DpopError::BadHeader(e.to_string()))?;
    if header.typ.as_deref() != Some(PROOF_TYPE) {
        return Err(DpopError::WrongType(header.typ));
    }
    let algorithm = Algorithm::from_name(&header.alg)
        .filter(|a| ALGORITHMS.contains(a))
        .ok_or_else(|| DpopError::DisallowedAlgorithm(header.alg.clone()))?;
    if let Some(name) = header.refused_member(KeyFrom::Jwk) {
        return Err(DpopError::UnsupportedHeader(name));
    }
    let jwk = header
        .jwk
        .ok_or_else(|| DpopError::BadKey("no jwk in the header".into()))?;
    let (key, thumbprint) = public_key(jwk, algorithm)?;
    let signature = decode_part(parts.signature)?;
    if !key.verify(parts.signing_input(proof), &signature) {
        return Err(DpopError::BadSignature);
    }
    let claims: ProofClaims = strict_json::from_slice_to(&decode_part(parts.payload)?)
        .map_err(|e| DpopError::BadClaims(e.to_string()))?;
    check_claims(&claims, expected)?;
    Ok(Proof {
        thumbprint,
        jti: claims.jti,
        issued_at: claims.iat,
    })
}

/// The proof's public key, ready to verify with, and its thumbprint.
fn public_key(jwk: Value, algorithm: Algorithm) -> Result<(VerifyingKey, String), DpopError> {
    let jwk: ProofJwk =
        serde_json::from_value(jwk).map_err(|e| DpopError::BadKey(e.to_string()))?;
    if jwk.d.is_some() {
        return Err(DpopError::PrivateKey);
    }
    let jwk = Jwk {
        kty: jwk.kty,
        crv: jwk.crv,
        x: jwk.x,
        y: jwk.y,
        // Only for the parser, which requires one; the proof's key has no name.
        kid: "dpop".into(),
        alg: jwk.alg,
        key_use: None,
    };
    let key = VerifyingKey::from_jwk(&jwk)
        .map_err(|e| DpopError::BadKey(e.to_string()))?
        .ok_or_else(|| DpopError::BadKey(format!("key type {:?} {:?}", jwk.kty, jwk.crv)))?;
    if key.algorithm() != algorithm {
        return Err(DpopError::BadKey(format!(
            "a {} key signing as {}",
            key.algorithm().as_str(),
            algorithm.as_str()
        )));
    }
    Ok((key, thumbprint(&jwk)))
}

fn check_claims(claims: &ProofClaims, expected: &Expectation<'_>) -> Result<(), DpopError> {
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(DpopError::BadClaims(format!(
            "jti must be 1 to {MAX_JTI_LEN} bytes"
        )));
    }
    if claims.htm != expected.method {
        return Err(DpopError::WrongMethod {
            expected: expected.method.to_owned(),
            got: claims.htm.clone(),
        });
    }
    let wanted = normalize_url(expected.url).ok_or_else(|| DpopError::WrongUrl {
        expected: expected.url.to_owned(),
        got: claims.htu.clone(),
    })?;
    if normalize_url(&claims.htu).as_deref() != Some(wanted.as_str()) {
        return Err(DpopError::WrongUrl {
            expected: wanted,
            got: claims.htu.clone(),
        });
    }
    let now = expected.now;
    if claims.iat > now.saturating_add(expected.leeway) {
        return Err(DpopError::IssuedInFuture {
            iat: claims.iat,
            now,
        });
    }
    if claims.iat < now.saturating_sub(expected.max_age.saturating_add(expected.leeway)) {
        return Err(DpopError::Stale {
            iat: claims.iat,
            now,
        });
    }
    match (expected.access_token, &claims.ath) {
        (Some(token), Some(ath)) if *ath == token_hash(token) => {}
        (Some(_), None) => return Err(DpopError::MissingTokenHash),
        (Some(_), Some(_)) | (None, Some(_)) => return Err(DpopError::WrongTokenHash),
        (None, None) => {}
    }
    if let Some(nonces) = expected.nonces
        && !claims
            .nonce
            .as_ref()
            .is_some_and(|nonce| nonces.contains(nonce))
    {
        return Err(DpopError::WrongNonce);
    }
    if claims
        .nonce
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NONCE_LEN)
    {
        return Err(DpopError::BadClaims("nonce too long".into()));
    }
    Ok(())
}

/// A URL as RFC 9449 §4.3 compares them: scheme and host in lower case, the default port
/// dropped, the path normalised, no query and no fragment. `None` if it is no absolute
/// http(s) URL.
pub fn normalize_url(text: &str) -> Option<String> {
    let mut url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
}

/// `ath`: the base64url SHA-256 of an access token.
pub fn token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The RFC 7638 thumbprint of a public key: the base64url SHA-256 of its required members in
/// lexicographic order, without white space.
pub fn thumbprint(jwk: &Jwk) -> String {
    let canonical = match &jwk.y {
        Some(y) => json!({"crv": jwk.crv, "kty": jwk.kty, "x": jwk.x, "y": y}),
        None => json!({"crv": jwk.crv, "kty": jwk.kty, "x": jwk.x}),
    };
    // serde_json writes object members in key order (no `preserve_order`), compactly.
    let text = serde_json::to_string(&canonical).expect("a JSON object serialises");
    URL_SAFE_NO_PAD.encode(Sha256::digest(text.as_bytes()))
}

/// Server nonces (RFC 9449 §8, §9) that need no state: the nonce of a time window is a MAC
/// of the window's number under a key the servers share, so every replica issues and accepts
/// the same ones. A nonce is accepted in its own window and the next, so a client that just
/// got one never sees it expire at once.
#[derive(Clone)]
pub struct NonceSource {
    key: [u8; 32],
    window: i64,
}

impl std::fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceSource")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl NonceSource {
    /// Nonces under `key`, a new one every `window_seconds` (at least 1).
    pub fn new(key: [u8; 32], window_seconds: i64) -> Self {
        Self {
            key,
            window: window_seconds.max(1),
        }
    }

    fn nonce(&self, window: i64) -> String {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(b"portcullis dpop nonce");
        mac.update(&window.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: i64) -> String {
        self.nonce(now.div_euclid(self.window))
    }

    /// The nonces a proof may carry at `now`: the current one and the one before.
    pub fn accepted(&self, now: i64) -> [String; 2] {
        let window = now.div_euclid(self.window);
        [self.nonce(window), self.nonce(window - 1)]
    }
}

/// What a client needs to make one proof.
#[derive(Debug, Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The URL the request goes to.
    pub url: &'a str,
    /// The access token sent with it, at a resource server.
    pub access_token: Option<&'a str>,
    /// The server's nonce, once it asked for one.
    pub nonce: Option<&'a str>,
    /// A unique id (at least 96 random bits), from the caller's CSPRNG.
    pub jti: &'a str,
    /// Now, Unix seconds.
    pub issued_at: i64,
}

/// A proof for one request, signed with `key` (the client side of [`verify_proof`]).
pub fn create_proof(key: &SigningKey, request: &ProofRequest<'_>) -> String {
    let mut jwk = serde_json::to_value(key.public_jwk()).expect("a JWK serialises");
    if let Some(members) = jwk.as_object_mut() {
        // The proof's key has no name at the server; only the key itself counts.
        members.remove("kid");
        members.remove("use");
    }
    let header = json!({"typ": PROOF_TYPE, "alg": key.algorithm().as_str(), "jwk": jwk});
    let mut claims = json!({
        "jti": request.jti,
        "htm": request.method,
        "htu": request.url,
        "iat": request.issued_at,
    });
    if let Some(token) = request.access_token {
        claims["ath"] = json!(token_hash(token));
    }
    if let Some(nonce) = request.nonce {
        claims["nonce"] = json!(nonce);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

impl SigningKey {
    /// The RFC 7638 thumbprint of this key's public half: what a token bound to it names in
    /// `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.public_jwk())
    }
}

#[cfg(test)]
mod tests;
