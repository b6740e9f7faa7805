//! Authentication: the agent's token, verified offline against the issuer's keys for the
//! resource the request is routed to (`aud`), with `act` required, and cached once verified.
//!
//! A token comes as `Authorization: Bearer`, or, bound to the agent's key, as
//! `Authorization: DPoP` with a `DPoP` proof (RFC 9449). A bound token is refused as Bearer;
//! a proof is checked on every request (one signature) against the method and the public URL
//! the request was made to, and its `jti` is spent once within the proof window, across
//! replicas when they share a store. Where DPoP is required, a Bearer token is refused too.

use std::sync::Arc;
use std::time::Duration;

use http::header;
use pingora::http::RequestHeader;
use portcullis_policy::dpop::{DpopError, Expectation, Proof};
use portcullis_policy::{ActorRule, Expected, VerifiedToken, VerifyError};

use crate::clock;
use crate::jsonrpc_error::GatewayError;
use crate::state::GatewayState;

/// How old a proof may be, in seconds (before the leeway).
pub(crate) const PROOF_MAX_AGE: i64 = 60;

/// The credential as presented.
enum Presented<'a> {
    /// `Authorization: Bearer`.
    Bearer(&'a str),
    /// `Authorization: DPoP` and its proof.
    Dpop { token: &'a str, proof: &'a str },
}

/// The request's verified token for `audience`; `require_dpop` refuses bearer tokens.
pub(super) async fn authenticate(
    state: &GatewayState,
    req: &RequestHeader,
    audience: &str,
    require_dpop: bool,
) -> Result<Arc<VerifiedToken>, GatewayError> {
    match presented(req)? {
        Presented::Bearer(_) if require_dpop => {
            Err(GatewayError::InvalidToken(VerifyError::ProofRequired))
        }
        Presented::Bearer(token) => {
            let (verified, _) = verify(state, token, audience, None)
                .await
                .map_err(GatewayError::InvalidToken)?;
            match verified.claims().confirmation {
                // Cached when it came with a proof; as Bearer it is refused all the same.
                Some(_) => Err(GatewayError::InvalidToken(VerifyError::ProofRequired)),
                None => Ok(verified),
            }
        }
        Presented::Dpop { token, proof } => {
            let now = clock::now();
            let url = format!("{}{}", state.settings.public_url, req.uri.path());
            let nonces = state
                .dpop_nonces
                .as_ref()
                .map(|source| source.accepted(now));
            let request = Expectation {
                method: req.method.as_str(),
                url: &url,
                access_token: Some(token),
                nonces: nonces.as_ref().map(|n| n.as_slice()),
                now,
                max_age: PROOF_MAX_AGE,
                leeway: state.settings.leeway_seconds,
            };
            // A proof without the current nonce is answered with one to retry with.
            let refused = |e| match (e, &state.dpop_nonces) {
                (VerifyError::Proof(DpopError::WrongNonce), Some(source)) => {
                    GatewayError::UseDpopNonce {
                        nonce: source.current(now),
                    }
                }
                (e, _) => GatewayError::InvalidToken(e),
            };
            let (verified, checked) = verify(state, token, audience, Some((proof, &request)))
                .await
                .map_err(refused)?;
            // A token verified just now came with its proof checked; a cached one did not.
            let proof = match checked {
                Some(checked) => checked,
                None => verified
                    .check_proof(token, proof, &request)
                    .map_err(refused)?,
            };
            spend(state, &proof).await?;
            Ok(verified)
        }
    }
}

/// Spends the proof's `jti` for as long as the proof could be presented.
async fn spend(state: &GatewayState, proof: &Proof) -> Result<(), GatewayError> {
    let window = PROOF_MAX_AGE + 2 * state.settings.leeway_seconds;
    let ttl = Duration::from_secs(u64::try_from(window).unwrap_or(u64::MAX));
    let value = format!("{}:{}", proof.thumbprint, proof.jti);
    match state.dpop_proofs.spend(&value, ttl).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(GatewayError::InvalidToken(VerifyError::Proof(
            DpopError::Replayed,
        ))),
        Err(e) => {
            tracing::warn!("refusing a DPoP proof whose id cannot be spent: {e}");
            Err(GatewayError::ProofUnavailable)
        }
    }
}

/// The one `Authorization` credential and, for DPoP, the one proof; two of either is
/// malformed, another scheme is no token.
fn presented(req: &RequestHeader) -> Result<Presented<'_>, GatewayError> {
    let malformed = || GatewayError::InvalidToken(VerifyError::Malformed);
    let mut values = req.headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(match req.headers.contains_key(header::AUTHORIZATION) {
            true => malformed(),
            false => GatewayError::MissingToken,
        });
    };
    let value = value.to_str().map_err(|_| malformed())?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Presented::Bearer(token))
        }
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("dpop") => {
            let mut proofs = req.headers.get_all("dpop").iter();
            let (Some(proof), None) = (proofs.next(), proofs.next()) else {
                let reason = match req.headers.contains_key("dpop") {
                    true => DpopError::Malformed,
                    false => DpopError::Missing,
                };
                return Err(GatewayError::InvalidToken(VerifyError::Proof(reason)));
            };
            let proof = proof.to_str().map_err(|_| {
                GatewayError::InvalidToken(VerifyError::Proof(DpopError::Malformed))
            })?;
            Ok(Presented::Dpop { token, proof })
        }
        _ => Err(GatewayError::MissingToken),
    }
}

/// The verified token, from the cache or verified now: as a bearer token, or with `proof`
/// for a bound one. A token verified now comes with its proof checked; a cached one without,
/// and the caller checks the proof (every request has its own).
async fn verify(
    state: &GatewayState,
    token: &str,
    audience: &str,
    proof: Option<(&str, &Expectation<'_>)>,
) -> Result<(Arc<VerifiedToken>, Option<Proof>), VerifyError> {
    let now = clock::now();
    let keys = &state.keys;
    let cache = &state.token_cache;
    if let Some(hit) = cache.get(audience, token, keys.version(), now) {
        return Ok((hit, None));
    }
    let expected = Expected {
        audience,
        now,
        actor: ActorRule::Required,
    };
    let verify = || match proof {
        None => keys.verifier().verify(token, &expected).map(|v| (v, None)),
        Some((proof, request)) => keys
            .verifier()
            .verify_with_proof(token, &expected, proof, request)
            .map(|(verified, proof)| (verified, Some(proof))),
    };
    // Read the key-set version before the keys: a concurrent refresh can then only make the
    // cache entry look older than it is, never newer.
    let mut version = keys.version();
    let (verified, checked) = match verify() {
        Err(VerifyError::UnknownKid(_)) if keys.refresh_for_unknown_kid().await => {
            version = keys.version();
            verify()
        }
        other => other,
    }?;
    let verified = Arc::new(verified);
    cache.insert(audience, token, verified.clone(), version, now);
    Ok((verified, checked))
}
