//! The token the gateway sends upstream in place of the agent's.
//!
//! MCP forbids passing the client's token through. For each call the gateway mints its own:
//! `iss` = the gateway, `aud` = this upstream only, the same user (`sub`), actor chain (`act`)
//! and grant (`gid`), and a lifetime of at most 60 seconds that never outlasts the agent's
//! token. Upstreams verify it with the gateway's JWKS (`/.well-known/jwks.json` on the proxy
//! port). It carries no constraints: the gateway has already enforced them.
//!
//! Signing costs about as much as verifying, so a minted token is reused for the same inbound
//! token and upstream while it has more than [`REUSE_MARGIN`] seconds left (a bounded map,
//! emptied when full).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_policy::{Claims, JwkSet, SigningKey};

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Unreadable.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a base64url 32-byte seed.
    #[error("{0} must hold a base64url-encoded 32-byte Ed25519 seed")]
    Format(String),
}

/// A minted token is not reused once fewer than this many seconds of it remain.
pub(crate) const REUSE_MARGIN: i64 = 10;
const MAX_REUSED: usize = 10_000;

/// Signs downstream tokens with the gateway's own key.
#[derive(Debug)]
pub(crate) struct DownstreamMinter {
    key: SigningKey,
    issuer: String,
    ttl: i64,
    minted: Mutex<HashMap<MintKey, (Arc<str>, i64)>>,
}

/// (inbound `jti`, upstream audience).
type MintKey = (String, String);

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes
}

impl DownstreamMinter {
    /// A minter with a key from `seed_file`, or a fresh one.
    pub(crate) fn new(
        issuer: String,
        ttl: i64,
        seed_file: Option<&std::path::Path>,
    ) -> Result<Self, KeyFileError> {
        let seed = match seed_file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
                    path: shown.clone(),
                    source,
                })?;
                URL_SAFE_NO_PAD
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or(KeyFileError::Format(shown))?
            }
            None => random_bytes(),
        };
        // The kid is derived from the public key, so replicas sharing a seed share a kid.
        let probe = SigningKey::ed25519_from_seed("probe", &seed).expect("static kid is valid");
        let kid = format!("gw-{}", &probe.public_jwk().x[..16]);
        let key = SigningKey::ed25519_from_seed(&kid, &seed).expect("derived kid is valid");
        Ok(Self {
            key,
            issuer,
            ttl,
            minted: Mutex::new(HashMap::new()),
        })
    }

    /// The public key set upstreams verify with.
    pub(crate) fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.key.public_jwk()],
        }
    }

    /// A token for `audience` on behalf of the inbound token's user and actors: a recent one
    /// minted for the same inbound token when it has time left, otherwise a fresh one.
    pub(crate) fn mint(&self, inbound: &Claims, audience: &str, now: i64) -> Arc<str> {
        let key = (inbound.token_id.clone(), audience.to_owned());
        let mut minted = self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, expires_at)) = minted.get(&key)
            && expires_at - now > REUSE_MARGIN
        {
            return token.clone();
        }
        let (token, expires_at) = self.sign_fresh(inbound, audience, now);
        if minted.len() >= MAX_REUSED {
            minted.clear();
        }
        minted.insert(key, (token.clone(), expires_at));
        token
    }

    fn sign_fresh(&self, inbound: &Claims, audience: &str, now: i64) -> (Arc<str>, i64) {
        let claims = Claims {
            issuer: self.issuer.clone(),
            subject: inbound.subject.clone(),
            audience: vec![audience.to_owned()],
            expires_at: (now + self.ttl).min(inbound.expires_at),
            not_before: Some(now),
            issued_at: now,
            token_id: URL_SAFE_NO_PAD.encode(random_bytes::<12>()),
            client_id: inbound.client_id.clone(),
            scope: None,
            actors: inbound.actors.clone(),
            grant_id: inbound.grant_id.clone(),
            confirmation: None,
            constraints: None,
        };
        (
            portcullis_policy::sign(&claims, &self.key).into(),
            claims.expires_at,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tokens::claims as inbound;

    #[test]
    fn a_minted_token_is_reused_only_for_the_same_inbound_token_and_upstream_while_fresh() {
        let minter = DownstreamMinter::new("https://gw".into(), 60, None).unwrap();
        let first = minter.mint(&inbound("t1", 1_000), "up-a", 0);
        assert_eq!(minter.mint(&inbound("t1", 1_000), "up-a", 40), first);
        assert_ne!(minter.mint(&inbound("t1", 1_000), "up-b", 40), first);
        assert_ne!(minter.mint(&inbound("t2", 1_000), "up-a", 40), first);
        assert_ne!(
            minter.mint(&inbound("t1", 1_000), "up-a", 51),
            first,
            "too close to expiry"
        );
    }

    #[test]
    fn a_minted_token_never_outlives_the_inbound_token() {
        let minter = DownstreamMinter::new("https://gw".into(), 60, None).unwrap();
        let token = minter.mint(&inbound("t1", 30), "up-a", 0);
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["exp"], 30);
        assert_eq!(claims["aud"], "up-a");
        assert_eq!(claims["iss"], "https://gw");
    }
}
