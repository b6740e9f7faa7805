//! A bounded cache of verified tokens, so an agent's steady stream of calls costs one signature
//! check per token, not one per call (Ed25519 verification is most of the gateway's own CPU per
//! request; see docs/BENCHMARKS.md).
//!
//! Entries are keyed by a SHA-256 of the resource and the token, so a token verified for one
//! upstream is never taken as verified for another. A hit still checks expiry; revocation is
//! checked on every request after the cache, never cached. The cache is cleared whenever the
//! issuer's key set changes, so a key withdrawn from the JWKS stops vouching for its tokens at
//! once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use portcullis_policy::VerifiedToken;
use sha2::{Digest, Sha256};

/// Verified tokens by hash.
#[derive(Debug)]
pub(crate) struct TokenCache {
    capacity: usize,
    leeway: i64,
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    keys_version: u64,
    map: HashMap<[u8; 32], Arc<VerifiedToken>>,
}

fn key(resource: &str, token: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(resource.as_bytes())
        .chain_update([0])
        .chain_update(token.as_bytes())
        .finalize()
        .into()
}

impl TokenCache {
    /// A cache of at most `capacity` tokens; `leeway` as the verifier's.
    pub(crate) fn new(capacity: usize, leeway: i64) -> Self {
        Self {
            capacity,
            leeway,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self, keys_version: u64) -> MutexGuard<'_, Entries> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.keys_version != keys_version {
            entries.map.clear();
            entries.keys_version = keys_version;
        }
        entries
    }

    /// The token verified earlier for `resource`, if still unexpired under the same key set.
    pub(crate) fn get(
        &self,
        resource: &str,
        token: &str,
        keys_version: u64,
        now: i64,
    ) -> Option<Arc<VerifiedToken>> {
        if self.capacity == 0 {
            return None;
        }
        let key = key(resource, token);
        let mut entries = self.entries(keys_version);
        let hit = entries.map.get(&key)?;
        if now >= hit.claims().expires_at.saturating_add(self.leeway) {
            entries.map.remove(&key);
            return None;
        }
        Some(hit.clone())
    }

    /// Remembers a token verified for `resource` under key set `keys_version`.
    pub(crate) fn insert(
        &self,
        resource: &str,
        token: &str,
        verified: Arc<VerifiedToken>,
        keys_version: u64,
        now: i64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries(keys_version);
        if entries.map.len() >= self.capacity {
            let leeway = self.leeway;
            entries
                .map
                .retain(|_, t| now < t.claims().expires_at.saturating_add(leeway));
            if entries.map.len() >= self.capacity {
                // Still full of live tokens: start over rather than track recency per hit.
                entries.map.clear();
            }
        }
        entries.map.insert(key(resource, token), verified);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_tokens;

    #[test]
    fn a_cached_token_is_found_only_for_its_resource_and_key_set() {
        let cache = TokenCache::new(10, 0);
        let (token, verified) = test_tokens::verified("t", 100);
        cache.insert("https://gw/mcp/a", &token, verified, 1, 0);
        assert!(cache.get("https://gw/mcp/a", &token, 1, 50).is_some());
        assert!(cache.get("https://gw/mcp/b", &token, 1, 50).is_none());
        assert!(
            cache.get("https://gw/mcp/a", &token, 2, 50).is_none(),
            "new keys, new proofs"
        );
        assert!(
            cache.get("https://gw/mcp/a", &token, 1, 50).is_none(),
            "the change cleared it"
        );
    }

    #[test]
    fn an_expired_token_is_not_served_from_the_cache() {
        let cache = TokenCache::new(10, 0);
        let (token, verified) = test_tokens::verified("t", 100);
        cache.insert("r", &token, verified, 1, 0);
        assert!(cache.get("r", &token, 1, 99).is_some());
        assert!(cache.get("r", &token, 1, 100).is_none());
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = TokenCache::new(2, 0);
        let (token, verified) = test_tokens::verified("t", 100);
        for resource in ["a", "b", "c"] {
            cache.insert(resource, &token, verified.clone(), 1, 0);
        }
        assert!(cache.entries(1).map.len() <= 2);
    }
}
