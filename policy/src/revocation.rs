//! Revocations: what they cover, how a token is checked against them, and the signed feed.
//!
//! A revocation names one of six things: a token (`jti`), a grant (`gid`, which every token
//! delegated from it carries, so the whole chain falls), one agent's branch of a grant
//! (`gid/agent`: every token of that grant the agent appears in, so the agent and what it
//! delegated fall while the rest of the grant stands), an agent (anywhere in a token's `act`
//! chain), a user (`sub`), or an MCP session at a gateway. Agent and user revocations cover the
//! tokens issued up to the moment of revocation (`iat` ≤ `issued_before`); the issuer also stops
//! issuing new ones.
//!
//! Entries identify their target by a keyed-free hash, `base64url(SHA-256(kind ":" value))[..22]`,
//! never the value itself: the feed is public like a CRL, and user ids and client ids are
//! nobody else's business. A checker hashes the few values of a token once and looks them up.
//!
//! The feed is a compact JWS (`typ: revocations+jwt`) signed by the issuer's token key, with a
//! monotonic `version` (the highest sequence number it includes), so a gateway can tell an old
//! feed from a new one and a stale one from a fresh one.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::claims::Claims;
use crate::key::SigningKey;
use crate::verify::{Verifier, VerifyError};

/// The JOSE `typ` of a signed revocation feed.
pub const FEED_TYPE: &str = "revocations+jwt";

/// What a revocation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One token, by `jti`.
    Token,
    /// A grant and every token delegated from it, by `gid`.
    Grant,
    /// Every token an agent appears in (by `client_id`, anywhere in `act`).
    Agent,
    /// Every token of a user, by `sub`.
    User,
    /// An MCP session at a gateway, by its session id.
    Session,
    /// One agent's branch of a grant, by `gid/agent`: every token of the grant the agent
    /// appears in (it, and whatever it delegated onward).
    Branch,
}

impl RevocationKind {
    /// The name used in hashes, URLs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Token => "token",
            RevocationKind::Grant => "grant",
            RevocationKind::Agent => "agent",
            RevocationKind::User => "user",
            RevocationKind::Session => "session",
            RevocationKind::Branch => "branch",
        }
    }

    /// Parses [`RevocationKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Token,
            Self::Grant,
            Self::Agent,
            Self::User,
            Self::Session,
            Self::Branch,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

/// The value naming `agent`'s branch of grant `gid`.
pub fn branch(gid: &str, agent: &str) -> String {
    format!("{gid}/{agent}")
}

/// The hash that identifies a revoked value in entries and feeds.
pub fn target_hash(kind: RevocationKind, value: &str) -> String {
    let digest = Sha256::new()
        .chain_update(kind.as_str())
        .chain_update(b":")
        .chain_update(value)
        .finalize();
    let mut out = URL_SAFE_NO_PAD.encode(digest);
    out.truncate(22); // 132 bits: collisions are not a practical concern
    out
}

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// Position in the issuer's revocation log; strictly increasing.
    pub seq: i64,
    /// What kind of target.
    pub kind: RevocationKind,
    /// [`target_hash`] of the target.
    pub target: String,
    /// When it was committed, Unix seconds.
    pub revoked_at: i64,
    /// For agent and user revocations: tokens issued at or before this time are covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<i64>,
    /// After this time no token it covers can still be valid; the entry may be dropped.
    pub expires_at: i64,
}

/// A set of revocations to check tokens against. Build it from a feed or a stream, then call
/// [`RevokedSet::covering`] per request.
#[derive(Debug, Clone, Default)]
pub struct RevokedSet {
    by_target: HashMap<String, RevocationEntry>,
    version: i64,
}

impl RevokedSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry (a later entry for the same target replaces an earlier one).
    pub fn insert(&mut self, entry: RevocationEntry) {
        self.version = self.version.max(entry.seq);
        self.by_target.insert(entry.target.clone(), entry);
    }

    /// The highest sequence number seen.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.by_target.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.by_target.is_empty()
    }

    /// Drops entries that can no longer cover a valid token.
    pub fn prune(&mut self, now: i64) {
        self.by_target.retain(|_, e| e.expires_at > now);
    }

    /// The entry revoking a token with these claims, if any.
    pub fn covering(&self, claims: &Claims) -> Option<&RevocationEntry> {
        if self.by_target.is_empty() {
            return None;
        }
        let lookup = |kind, value: &str| self.by_target.get(&target_hash(kind, value));
        let issued_before = |entry: &&RevocationEntry| {
            entry
                .issued_before
                .is_none_or(|cutoff| claims.issued_at <= cutoff)
        };
        lookup(RevocationKind::Token, &claims.token_id)
            .or_else(|| {
                claims
                    .grant_id
                    .as_deref()
                    .and_then(|gid| lookup(RevocationKind::Grant, gid))
            })
            .or_else(|| lookup(RevocationKind::User, &claims.subject).filter(issued_before))
            .or_else(|| {
                let actors = claims.actors.iter().flat_map(|chain| chain.actors());
                std::iter::once(claims.client_id.as_str())
                    .chain(actors.map(|a| a.sub.as_str()))
                    .find_map(|agent| lookup(RevocationKind::Agent, agent).filter(issued_before))
            })
            .or_else(|| {
                let gid = claims.grant_id.as_deref()?;
                let actors = claims.actors.iter().flat_map(|chain| chain.actors());
                std::iter::once(claims.client_id.as_str())
                    .chain(actors.map(|a| a.sub.as_str()))
                    .find_map(|agent| lookup(RevocationKind::Branch, &branch(gid, agent)))
            })
    }

    /// The entry revoking an MCP session, if any.
    pub fn covering_session(&self, session_id: &str) -> Option<&RevocationEntry> {
        self.by_target
            .get(&target_hash(RevocationKind::Session, session_id))
    }
}

/// The signed feed's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevocationFeed {
    /// The issuer.
    pub iss: String,
    /// When the feed was made, Unix seconds.
    pub iat: i64,
    /// The highest sequence number included.
    pub version: i64,
    /// Every unexpired entry, in sequence order.
    pub entries: Vec<RevocationEntry>,
}

/// Signs a feed.
pub fn sign_feed(feed: &RevocationFeed, key: &SigningKey) -> String {
    let payload = serde_json::to_vec(feed).expect("a feed serialises");
    crate::sign::sign_payload(&payload, FEED_TYPE, key)
}

/// The largest signed feed accepted: about a hundred thousand outstanding revocations. The feed
/// carries every unexpired entry, so it outgrows a token's size cap after a few dozen (a
/// gateway then could not catch up from it at all).
pub const MAX_FEED_LEN: usize = 16 * 1024 * 1024;

/// Verifies a feed signed by `verifier`'s issuer and returns it. A feed older than `max_age`
/// seconds (by its `iat`), or larger than [`MAX_FEED_LEN`], is refused.
pub fn verify_feed(
    token: &str,
    verifier: &Verifier,
    now: i64,
    max_age: i64,
) -> Result<RevocationFeed, FeedError> {
    let payload = verifier.verify_payload_up_to(token, FEED_TYPE, MAX_FEED_LEN)?;
    let feed: RevocationFeed = crate::strict_json::from_slice_to(&payload)
        .map_err(|e| FeedError::Malformed(e.to_string()))?;
    if feed.iss != verifier.issuer() {
        return Err(FeedError::WrongIssuer(feed.iss));
    }
    if now.saturating_sub(feed.iat) > max_age {
        return Err(FeedError::Stale { iat: feed.iat, now });
    }
    Ok(feed)
}

/// Why a feed was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The JWS did not verify.
    #[error(transparent)]
    Signature(#[from] VerifyError),
    /// The payload is not a feed.
    #[error("malformed revocation feed: {0}")]
    Malformed(String),
    /// Another issuer's feed.
    #[error("revocation feed from {0:?}, not our issuer")]
    WrongIssuer(String),
    /// Older than allowed.
    #[error("revocation feed made at {iat} is stale (now {now})")]
    Stale {
        /// The feed's `iat`.
        iat: i64,
        /// Now.
        now: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::{Actor, ActorChain};
    use crate::key::KeySet;

    fn claims() -> Claims {
        Claims {
            issuer: "https://issuer".into(),
            subject: "alice".into(),
            audience: vec!["https://gw/mcp/x".into()],
            expires_at: 2_000,
            not_before: None,
            issued_at: 1_000,
            token_id: "jti-1".into(),
            client_id: "agent-b".into(),
            scope: None,
            actors: Some(
                ActorChain::new(Actor {
                    sub: "agent-a".into(),
                })
                .delegate_to(Actor {
                    sub: "agent-b".into(),
                })
                .unwrap(),
            ),
            grant_id: Some("g1".into()),
            confirmation: None,
            constraints: None,
        }
    }

    fn entry(
        seq: i64,
        kind: RevocationKind,
        value: &str,
        issued_before: Option<i64>,
    ) -> RevocationEntry {
        RevocationEntry {
            seq,
            kind,
            target: target_hash(kind, value),
            revoked_at: 1_500,
            issued_before,
            expires_at: 5_000,
        }
    }

    #[test]
    fn a_branch_covers_its_agent_and_what_it_delegated_and_nothing_else_of_the_grant() {
        let mut set = RevokedSet::new();
        set.insert(entry(
            1,
            RevocationKind::Branch,
            &branch("g1", "agent-b"),
            None,
        ));
        // agent-a → agent-b: in the branch.
        assert!(set.covering(&claims()).is_some());
        // agent-a alone (the parent): not in it.
        let mut parent = claims();
        parent.client_id = "agent-a".into();
        parent.actors = Some(ActorChain::new(Actor {
            sub: "agent-a".into(),
        }));
        assert!(set.covering(&parent).is_none());
        // agent-b under another grant: not in it.
        let mut elsewhere = claims();
        elsewhere.grant_id = Some("g2".into());
        assert!(set.covering(&elsewhere).is_none());
    }

    #[test]
    fn revoking_the_grant_covers_every_token_delegated_from_it() {
        let mut set = RevokedSet::new();
        set.insert(entry(1, RevocationKind::Grant, "g1", None));
        assert_eq!(set.covering(&claims()).unwrap().seq, 1);
        let mut other = claims();
        other.grant_id = Some("g2".into());
        assert!(set.covering(&other).is_none());
    }

    #[test]
    fn revoking_an_earlier_agent_in_the_chain_covers_the_token() {
        let mut set = RevokedSet::new();
        set.insert(entry(1, RevocationKind::Agent, "agent-a", Some(1_500)));
        assert!(set.covering(&claims()).is_some());
    }

    #[test]
    fn agent_and_user_revocations_do_not_cover_tokens_issued_later() {
        let mut set = RevokedSet::new();
        set.insert(entry(1, RevocationKind::User, "alice", Some(900)));
        assert!(
            set.covering(&claims()).is_none(),
            "issued at 1000, after the cutoff"
        );
        set.insert(entry(2, RevocationKind::User, "alice", Some(1_000)));
        assert!(set.covering(&claims()).is_some());
    }

    #[test]
    fn the_target_hash_does_not_reveal_the_value_and_separates_kinds() {
        let user = target_hash(RevocationKind::User, "alice");
        assert!(!user.contains("alice"));
        assert_ne!(user, target_hash(RevocationKind::Agent, "alice"));
        assert_eq!(user.len(), 22);
    }

    #[test]
    fn expired_entries_are_pruned() {
        let mut set = RevokedSet::new();
        set.insert(entry(1, RevocationKind::Token, "jti-1", None));
        set.prune(4_999);
        assert_eq!(set.len(), 1);
        set.prune(5_000);
        assert!(set.is_empty());
        assert_eq!(set.version(), 1, "the version survives pruning");
    }

    #[test]
    fn a_feed_round_trips_and_a_tampered_or_stale_one_is_refused() {
        let key = SigningKey::ed25519_from_seed("k1", &[3; 32]).unwrap();
        let mut keys = KeySet::default();
        keys.insert(key.verifying_key());
        let verifier = Verifier::new("https://issuer", keys);
        let feed = RevocationFeed {
            iss: "https://issuer".into(),
            iat: 1_000,
            version: 7,
            entries: vec![entry(7, RevocationKind::Grant, "g1", None)],
        };
        let token = sign_feed(&feed, &key);
        assert_eq!(verify_feed(&token, &verifier, 1_010, 60).unwrap(), feed);
        assert!(matches!(
            verify_feed(&token, &verifier, 1_100, 60),
            Err(FeedError::Stale { .. })
        ));
        let (head, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged = RevocationFeed {
            entries: vec![],
            ..feed
        };
        let forged = format!(
            "{head}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap())
        );
        assert!(matches!(
            verify_feed(&forged, &verifier, 1_010, 60),
            Err(FeedError::Signature(VerifyError::BadSignature))
        ));
    }

    #[test]
    fn a_feed_of_many_revocations_verifies_though_it_is_larger_than_any_token() {
        let key = SigningKey::ed25519_from_seed("k1", &[3; 32]).unwrap();
        let mut keys = KeySet::default();
        keys.insert(key.verifying_key());
        let verifier = Verifier::new("https://issuer", keys);
        let feed = RevocationFeed {
            iss: "https://issuer".into(),
            iat: 1_000,
            version: 1_000,
            entries: (1..=1_000)
                .map(|seq| entry(seq, RevocationKind::Token, &format!("jti-{seq}"), None))
                .collect(),
        };
        let token = sign_feed(&feed, &key);
        assert!(token.len() > crate::verify::DEFAULT_MAX_TOKEN_LEN * 10);
        assert_eq!(verify_feed(&token, &verifier, 1_010, 60).unwrap(), feed);
    }

    #[test]
    fn an_access_token_is_not_a_feed() {
        let key = SigningKey::ed25519_from_seed("k1", &[3; 32]).unwrap();
        let mut keys = KeySet::default();
        keys.insert(key.verifying_key());
        let verifier = Verifier::new("https://issuer", keys);
        let token = crate::sign(&claims(), &key);
        assert!(matches!(
            verify_feed(&token, &verifier, 1_010, 60),
            Err(FeedError::Signature(VerifyError::WrongType(_)))
        ));
    }
}
