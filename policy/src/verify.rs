//! Verifying a compact JWS into a [`VerifiedToken`].
//!
//! The checks follow RFC 8725 (and its successor draft) and RFC 9068 §4, in an order where each
//! step only trusts what the previous steps proved:
//!
//! 1. size cap and the compact alphabet `[A-Za-z0-9-_.]`, three parts;
//! 2. the header, parsed strictly (duplicate keys refused): `alg` on the allowlist and
//!    case-sensitive (so never `none`, never an HMAC), `typ` = `at+jwt`, no `crit`, no embedded
//!    or remote key references (`jwk`, `jku`, `x5u`, `x5c`), a `kid` of plain characters found
//!    in the trusted key set, and that key made for that `alg`;
//! 3. the signature;
//! 4. only then the payload, parsed strictly into [`Claims`];
//! 5. `iss`, `aud`, `exp`, `nbf`, `iat` against the caller's [`Expected`] values with a bounded
//!    clock skew, and whether an `act` chain must or must not be present.
//!
//! A [`VerifiedToken`] can only be built here, so holding one proves every check passed.
//! The module is deliberately not built on `jsonwebtoken`'s `decode`: that path cannot refuse
//! duplicate claim keys or foreign header parameters, and it re-parses the key on every call.

use crate::claims::{Claims, ClaimsError, RawClaims};
use crate::dpop::DpopError;
use crate::jws::{self, Header, KeyFrom, Parts};
use crate::key::{Algorithm, KeySet, is_valid_kid};
use crate::sign::TOKEN_TYPE;
use crate::strict_json::{self, StrictJsonError};

/// Default cap on a token's length in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default allowed clock skew in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Longer than the configured cap.
    #[error("token is {len} bytes, more than the {max} allowed")]
    Oversized {
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not three base64url parts of the compact serialization.
    #[error("token is not a compact JWS")]
    Malformed,
    /// The header is not valid JSON or has duplicate keys.
    #[error("token header is invalid: {0}")]
    BadHeader(String),
    /// The `alg` is not on the allowlist (includes `none` and every HMAC).
    #[error("algorithm {0:?} is not allowed")]
    DisallowedAlgorithm(String),
    /// `typ` is absent or not `at+jwt`.
    #[error("token type {0:?} is not at+jwt")]
    WrongType(Option<String>),
    /// The header carries a parameter that is never honoured (`crit`, `jku`, `jwk`, `x5u`, `x5c`).
    #[error("header parameter {0:?} is not supported")]
    UnsupportedHeader(&'static str),
    /// No `kid`.
    #[error("token has no kid")]
    MissingKid,
    /// A `kid` with characters outside `[A-Za-z0-9._-]`.
    #[error("kid is not a plain identifier")]
    InvalidKid,
    /// No trusted key has this `kid`. A caller may refresh its key set once and retry.
    #[error("no trusted key has kid {0:?}")]
    UnknownKid(String),
    /// The key for this `kid` is for another algorithm.
    #[error("kid {kid:?} is a {key:?} key but the token says {token:?}")]
    AlgorithmKeyMismatch {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        key: Algorithm,
        /// The token's algorithm.
        token: Algorithm,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The payload is not valid JSON, has duplicate keys, or is not a valid claims set.
    #[error("token payload is invalid: {0}")]
    BadPayload(String),
    /// A claim is invalid.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
    /// `iss` is not the expected issuer.
    #[error("issuer {got:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// Expected.
        expected: String,
        /// Found.
        got: String,
    },
    /// `aud` does not include the expected audience.
    #[error("token is not for audience {expected:?}")]
    WrongAudience {
        /// Expected.
        expected: String,
    },
    /// `exp` has passed.
    #[error("token expired at {exp} (now {now})")]
    Expired {
        /// `exp`.
        exp: i64,
        /// Now.
        now: i64,
    },
    /// `nbf` is in the future.
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid {
        /// `nbf`.
        nbf: i64,
        /// Now.
        now: i64,
    },
    /// `iat` is in the future.
    #[error("token issued in the future at {iat} (now {now})")]
    IssuedInFuture {
        /// `iat`.
        iat: i64,
        /// Now.
        now: i64,
    },
    /// A delegation token without an `act` chain.
    #[error("token has no act claim: it is not a delegation token")]
    MissingActor,
    /// An `act` chain where none may be.
    #[error("token has an act claim where none is allowed")]
    UnexpectedActor,
    /// A token bound to a key (`cnf.jkt`) presented without a DPoP proof, as a bearer token.
    #[error("token is bound to a key (DPoP) and was presented without a proof")]
    ProofRequired,
    /// A DPoP proof presented with a token that is bound to no key.
    #[error("a DPoP proof came with a token that is bound to no key")]
    NotBound,
    /// The DPoP proof was refused.
    #[error("DPoP proof: {0}")]
    Proof(#[from] DpopError),
}

impl VerifyError {
    /// A stable, machine-readable code for this kind of refusal (used by the golden vectors).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Oversized { .. } => "oversized",
            VerifyError::Malformed => "malformed",
            VerifyError::BadHeader(_) => "bad_header",
            VerifyError::DisallowedAlgorithm(_) => "disallowed_algorithm",
            VerifyError::WrongType(_) => "wrong_type",
            VerifyError::UnsupportedHeader(_) => "unsupported_header",
            VerifyError::MissingKid => "missing_kid",
            VerifyError::InvalidKid => "invalid_kid",
            VerifyError::UnknownKid(_) => "unknown_kid",
            VerifyError::AlgorithmKeyMismatch { .. } => "algorithm_key_mismatch",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::BadPayload(_) => "bad_payload",
            VerifyError::Claims(_) => "invalid_claims",
            VerifyError::WrongIssuer { .. } => "wrong_issuer",
            VerifyError::WrongAudience { .. } => "wrong_audience",
            VerifyError::Expired { .. } => "expired",
            VerifyError::NotYetValid { .. } => "not_yet_valid",
            VerifyError::IssuedInFuture { .. } => "issued_in_future",
            VerifyError::MissingActor => "missing_actor",
            VerifyError::UnexpectedActor => "unexpected_actor",
            VerifyError::ProofRequired => "proof_required",
            VerifyError::NotBound => "not_bound",
            VerifyError::Proof(e) => e.code(),
        }
    }
}

/// Whether the token must name an actor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorRule {
    /// A delegation token: `act` is required.
    Required,
    /// A token of the user or of a client itself: `act` must be absent.
    Forbidden,
}

/// What the caller expects of this particular token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// One audience the token must carry (this resource's identifier).
    pub audience: &'a str,
    /// Now, in Unix seconds.
    pub now: i64,
    /// Whether `act` must or must not be present.
    pub actor: ActorRule,
}

/// Verifies tokens of one issuer against its keys.
#[derive(Debug, Clone)]
pub struct Verifier {
    issuer: String,
    keys: KeySet,
    algorithms: Vec<Algorithm>,
    leeway: i64,
    max_len: usize,
}

fn decode_part(part: &str) -> Result<Vec<u8>, VerifyError> {
    jws::decode(part).ok_or(VerifyError::Malformed)
}

impl Verifier {
    /// A verifier for tokens from `issuer`, signed by one of `keys`, with the default
    /// algorithm allowlist (EdDSA, ES256), leeway and size cap.
    pub fn new(issuer: impl Into<String>, keys: KeySet) -> Self {
        Self {
            issuer: issuer.into(),
            keys,
            algorithms: vec![Algorithm::EdDsa, Algorithm::Es256],
            leeway: DEFAULT_LEEWAY_SECS,
            max_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// Restricts the accepted algorithms.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// Sets the clock skew allowed on `exp`, `nbf` and `iat`.
    pub fn with_leeway(mut self, seconds: i64) -> Self {
        self.leeway = seconds.max(0);
        self
    }

    /// Sets the largest token accepted, in bytes.
    pub fn with_max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes;
        self
    }

    /// The issuer this verifier trusts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The trusted keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Verifies a bearer `token` and checks it against `expected`. A token bound to a key is
    /// refused ([`VerifyError::ProofRequired`]): it goes with a proof, to
    /// [`verify_with_proof`](Self::verify_with_proof).
    pub fn verify(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<VerifiedToken, VerifyError> {
        let verified = self.verify_unbound_or_bound(token, expected)?;
        if verified.claims.confirmation.is_some() {
            return Err(VerifyError::ProofRequired);
        }
        Ok(verified)
    }

    /// Verifies a token presented with a DPoP proof (`Authorization: DPoP`): the token as
    /// [`verify`](Self::verify) does, then the proof against `request` and the token (its
    /// `ath`), and that the proof's key is the one the token is bound to. Returns the proof
    /// too, whose `jti` the caller must see only once within the proof window.
    pub fn verify_with_proof(
        &self,
        token: &str,
        expected: &Expected<'_>,
        proof: &str,
        request: &crate::dpop::Expectation<'_>,
    ) -> Result<(VerifiedToken, crate::dpop::Proof), VerifyError> {
        let verified = self.verify_unbound_or_bound(token, expected)?;
        let proof = verified.check_proof(token, proof, request)?;
        Ok((verified, proof))
    }

    /// Verifies a token as [`verify`](Self::verify) does, but accepts one bound to a key
    /// without a proof of it. For an authorization server that takes tokens as input to its
    /// token endpoint (RFC 8693 `subject_token`, `actor_token`) and checks the binding itself
    /// against the DPoP proof made to that endpoint; never for a resource server.
    pub fn verify_unbound_or_bound(
        &self,
        token: &str,
        expected: &Expected<'_>,
    ) -> Result<VerifiedToken, VerifyError> {
        let claims = self.verified_claims(token)?;
        self.check_times(&claims, expected.now)?;
        if !claims.has_audience(expected.audience) {
            return Err(VerifyError::WrongAudience {
                expected: expected.audience.to_owned(),
            });
        }
        match (expected.actor, claims.actors.is_some()) {
            (ActorRule::Required, false) => return Err(VerifyError::MissingActor),
            (ActorRule::Forbidden, true) => return Err(VerifyError::UnexpectedActor),
            _ => {}
        }
        Ok(VerifiedToken { claims })
    }

    /// Verifies a token of this issuer without checking its audience or actor chain.
    ///
    /// Dangerous for a resource server, which must only accept tokens meant for it; this is for
    /// the issuer itself, which introspects and revokes its tokens whatever they are for.
    pub fn dangerous_verify_any_audience(
        &self,
        token: &str,
        now: i64,
    ) -> Result<VerifiedToken, VerifyError> {
        let claims = self.verified_claims(token)?;
        self.check_times(&claims, now)?;
        Ok(VerifiedToken { claims })
    }

    fn verified_claims(&self, token: &str) -> Result<Claims, VerifyError> {
        let payload = self.verify_payload(token, TOKEN_TYPE)?;
        let raw: RawClaims = strict_json::from_slice_to(&payload)
            .map_err(|e: StrictJsonError| VerifyError::BadPayload(e.to_string()))?;
        Ok(Claims::try_from(raw)?)
    }

    /// Verifies a compact JWS of type `typ` from this issuer (steps 1–3 above) and returns its
    /// payload bytes, unparsed. Used for documents other than access tokens, such as the
    /// revocation feed; the `typ` check keeps one kind from passing for another.
    pub fn verify_payload(&self, token: &str, typ: &str) -> Result<Vec<u8>, VerifyError> {
        self.verify_payload_up_to(token, typ, self.max_len)
    }

    /// As [`verify_payload`](Self::verify_payload), for a document that may be larger than
    /// a token (a revocation feed grows with the revocations outstanding): `max_len` bytes at
    /// most instead of the verifier's token cap.
    pub fn verify_payload_up_to(
        &self,
        token: &str,
        typ: &str,
        max_len: usize,
    ) -> Result<Vec<u8>, VerifyError> {
        self.verify_signed(token, max_len, |found| {
            found.is_some_and(|t| {
                t.eq_ignore_ascii_case(typ)
                    || t.strip_prefix("application/")
                        .is_some_and(|t| t.eq_ignore_ascii_case(typ))
            })
        })
    }

    /// Verifies a client's signed assertion (RFC 7523 `private_key_jwt`) and returns its
    /// payload, unparsed. Such assertions are commonly untyped, so `typ` may be absent, `JWT`,
    /// or `client-authentication+jwt` (draft-ietf-oauth-rfc7523bis); the verifier's keys are the
    /// client's own, so no token of another kind can pass for one.
    pub fn verify_assertion_payload(&self, token: &str) -> Result<Vec<u8>, VerifyError> {
        self.verify_signed(token, self.max_len, |found| {
            found.is_none_or(|t| {
                t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("client-authentication+jwt")
            })
        })
    }

    fn verify_signed(
        &self,
        token: &str,
        max_len: usize,
        typ_ok: impl Fn(Option<&str>) -> bool,
    ) -> Result<Vec<u8>, VerifyError> {
        if token.len() > max_len {
            return Err(VerifyError::Oversized {
                len: token.len(),
                max: max_len,
            });
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(VerifyError::Malformed);
        }
        let parts = Parts::split(token).ok_or(VerifyError::Malformed)?;
        let header: Header = strict_json::from_slice_to(&decode_part(parts.header)?)
            .map_err(|e| VerifyError::BadHeader(e.to_string()))?;
        let algorithm = Algorithm::from_name(&header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| VerifyError::DisallowedAlgorithm(header.alg.clone()))?;
        if !typ_ok(header.typ.as_deref()) {
            return Err(VerifyError::WrongType(header.typ));
        }
        if let Some(name) = header.refused_member(KeyFrom::Kid) {
            return Err(VerifyError::UnsupportedHeader(name));
        }
        let kid = header.kid.ok_or(VerifyError::MissingKid)?;
        if !is_valid_kid(&kid) {
            return Err(VerifyError::InvalidKid);
        }
        let key = self
            .keys
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKid(kid.clone()))?;
        if key.algorithm() != algorithm {
            return Err(VerifyError::AlgorithmKeyMismatch {
                kid,
                key: key.algorithm(),
                token: algorithm,
            });
        }

        let signature = decode_part(parts.signature)?;
        if !key.verify(parts.signing_input(token), &signature) {
            return Err(VerifyError::BadSignature);
        }
        decode_part(parts.payload)
    }

    /// Issuer and times; the order keeps the error for a foreign token about its issuer.
    fn check_times(&self, claims: &Claims, now: i64) -> Result<(), VerifyError> {
        if claims.issuer != self.issuer {
            return Err(VerifyError::WrongIssuer {
                expected: self.issuer.clone(),
                got: claims.issuer.clone(),
            });
        }
        if now >= claims.expires_at.saturating_add(self.leeway) {
            return Err(VerifyError::Expired {
                exp: claims.expires_at,
                now,
            });
        }
        if let Some(nbf) = claims.not_before
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(VerifyError::NotYetValid { nbf, now });
        }
        if claims.issued_at > now.saturating_add(self.leeway) {
            return Err(VerifyError::IssuedInFuture {
                iat: claims.issued_at,
                now,
            });
        }
        Ok(())
    }
}

/// A token whose signature, header and claims were checked by [`Verifier::verify`] (or, bound
/// to a key, by [`Verifier::verify_with_proof`]).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    claims: Claims,
}

impl VerifiedToken {
    /// The validated claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Checks a DPoP proof presented with this token (whose compact form is `token`, for the
    /// proof's `ath`): valid for `request`, and signed by the key the token is bound to. For a
    /// token verified earlier and cached; a fresh one goes through
    /// [`Verifier::verify_with_proof`].
    pub fn check_proof(
        &self,
        token: &str,
        proof: &str,
        request: &crate::dpop::Expectation<'_>,
    ) -> Result<crate::dpop::Proof, VerifyError> {
        let Some(jkt) = self.claims.confirmation.as_deref() else {
            return Err(VerifyError::NotBound);
        };
        let request = crate::dpop::Expectation {
            access_token: Some(token),
            ..*request
        };
        let proof = crate::dpop::verify_proof(proof, &request)?;
        if proof.thumbprint != jkt {
            return Err(DpopError::WrongKey.into());
        }
        Ok(proof)
    }

    /// Gives up the proof and keeps the claims.
    pub fn into_claims(self) -> Claims {
        self.claims
    }
}
