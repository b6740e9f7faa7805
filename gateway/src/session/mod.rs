//! MCP sessions as the agent sees them: ids minted by the gateway, bound to who opened them,
//! that any replica can serve.
//!
//! An upstream's `Mcp-Session-Id` never reaches the agent. When an upstream opens a session,
//! the gateway mints an id of its own that seals the upstream's id, bound to the upstream and
//! to the principal (issuer, user, agent) that opened it ([`sealed`]), and rewrites the header
//! both ways. A session id presented with another principal's token, or at another upstream,
//! is unknown: 404, as for an ended session, so a stolen id is worth nothing without the token
//! that goes with it (MCP security best practices, session hijacking).
//!
//! Replicas that share the session keys (`sessions.keys_file`) read each other's ids, so no
//! sticky routing is needed. What an id cannot carry is kept by handle:
//! - with a shared store ([`shared`]), whether the session lives: ended on one replica is
//!   ended on all, and idle expiry counts uses at every replica. While the store cannot
//!   answer, `shared_state.mode` decides: `lenient` serves on what this replica knows,
//!   `strict` refuses with [`SessionError::Unavailable`].
//! - without one ([`local`]), each replica knows the sessions it ended and those idle at it;
//!   an ended session's upstream refuses its id too.
//!
//! Every id ages out `sessions.max_lifetime_seconds` after its session opened, whatever
//! happens to the stores.

mod local;
mod sealed;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use portcullis_policy::Claims;

use self::local::{Known, LocalSessions};
pub(crate) use self::sealed::MAX_UPSTREAM_ID;
use self::sealed::Sealer;
use self::shared::SharedSessions;
use crate::config::{SessionKey, SessionSettings, SharedMode};
use crate::shared_state::{SharedStore, StoreError};
use crate::{clock, metrics};

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    issuer: String,
    subject: String,
    client_id: String,
}

impl Principal {
    /// The principal a token speaks for: its issuer, user and current agent.
    pub(crate) fn of(claims: &Claims) -> Self {
        Self {
            issuer: claims.issuer.clone(),
            subject: claims.subject.clone(),
            client_id: claims.client_id.clone(),
        }
    }
}

/// What the agent's client declared it can do at `initialize`, sealed into the session id so
/// every replica knows it (the gateway answers a call that needs a person's approval with a
/// URL elicitation only to a client that declared `elicitation.url`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClientAbilities {
    /// `capabilities.elicitation.url` was declared.
    pub(crate) url_elicitation: bool,
}

impl ClientAbilities {
    fn to_byte(self) -> u8 {
        u8::from(self.url_elicitation)
    }

    fn from_byte(byte: u8) -> Self {
        Self {
            url_elicitation: byte & 1 != 0,
        }
    }
}

/// Why a session could not be looked up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Strict mode, and the shared store could not say whether the session lives.
    #[error("the session store is unreachable: {0}")]
    Unavailable(#[source] StoreError),
}

/// A session the agent named, found live.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The upstream session behind it; empty for a fleet's own session.
    pub(crate) upstream_id: String,
    /// What the agent's client declared when it opened the session.
    pub(crate) client: ClientAbilities,
}

/// The gateway's sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    sealer: Sealer,
    /// Derived from the sealing key, for the DPoP nonces the replicas share.
    nonce_key: [u8; 32],
    local: LocalSessions,
    shared: Option<SharedSessions>,
    idle: Duration,
    max_lifetime: Duration,
}

/// The handle of an id the gateway minted: its first characters.
fn handle(id: &str) -> Option<&str> {
    id.get(..sealed::HANDLE_LEN)
}

impl Sessions {
    /// Sessions sealed with the configured keys (or a key of this process), shared through
    /// `store` when there is one.
    pub(crate) fn new(settings: &SessionSettings, store: Option<Arc<SharedStore>>) -> Self {
        let keys = match &settings.keys {
            Some(keys) => keys.clone(),
            None => vec![SessionKey::generate()],
        };
        Self {
            nonce_key: keys[0].derive(b"dpop nonces"),
            sealer: Sealer::new(&keys),
            local: LocalSessions::default(),
            shared: store.map(|store| SharedSessions { store }),
            idle: settings.idle_timeout,
            max_lifetime: settings.max_lifetime,
        }
    }

    /// The key of the DPoP nonces: the same at every replica holding the same session keys.
    pub(crate) fn nonce_key(&self) -> [u8; 32] {
        self.nonce_key
    }

    fn expires_at(&self, opened_at: i64) -> i64 {
        let lifetime = i64::try_from(self.max_lifetime.as_secs()).unwrap_or(i64::MAX);
        opened_at.saturating_add(lifetime)
    }

    /// Mints the id of a session `upstream` opened as `upstream_id` for `principal`.
    pub(crate) async fn open(
        &self,
        upstream: &str,
        upstream_id: &str,
        principal: &Principal,
        client: ClientAbilities,
    ) -> String {
        let now = clock::now();
        let id = self
            .sealer
            .seal(upstream, principal, now, client, upstream_id);
        let handle = handle(&id).expect("a sealed id is longer than its handle");
        self.local.open(handle, self.expires_at(now), now);
        if let Some(shared) = &self.shared
            && shared.open(handle, self.idle).await.is_err()
        {
            // In strict mode the next use is refused until the store answers, and then the
            // session is unknown (the agent opens another); in lenient mode this replica's
            // knowledge serves meanwhile.
            metrics::shared_store_fallback("session");
        }
        id
    }

    /// The session `id`, if it lives, is at `upstream` and belongs to `principal`; marks it
    /// used. Anything else is indistinguishable from an unknown session.
    pub(crate) async fn resolve(
        &self,
        id: &str,
        upstream: &str,
        principal: &Principal,
    ) -> Result<Option<Resolved>, SessionError> {
        let Some(opened) = self.sealer.open(id, upstream, principal) else {
            return Ok(None);
        };
        let now = clock::now();
        let expires_at = self.expires_at(opened.opened_at);
        if now >= expires_at {
            return Ok(None);
        }
        let known = self.local.touch(opened.handle, expires_at, now, self.idle);
        let live = match (&self.shared, known) {
            (_, Known::Ended) => false,
            (None, known) => known == Known::Live,
            (Some(shared), known) => match shared.touch(opened.handle, self.idle).await {
                Ok(live) => {
                    if live {
                        self.local.used(opened.handle);
                    }
                    live
                }
                Err(e) => match shared.store.mode() {
                    SharedMode::Lenient => {
                        metrics::shared_store_fallback("session");
                        known == Known::Live
                    }
                    SharedMode::Strict => return Err(SessionError::Unavailable(e)),
                },
            },
        };
        Ok(live.then_some(Resolved {
            upstream_id: opened.upstream_id,
            client: opened.client,
        }))
    }

    /// Forgets a session (ended by DELETE, or gone upstream) on every replica; returns a fleet
    /// session's member sessions, to end them too.
    pub(crate) async fn end(&self, id: &str) -> Vec<(String, String)> {
        let Some(handle) = handle(id) else {
            return Vec::new();
        };
        // The id was resolved before it is ended, so it has not aged out; its tombstone here
        // may stay as long as any id can.
        let now = clock::now();
        let mut members = self.local.end(handle, self.expires_at(now), now);
        if let Some(shared) = &self.shared {
            match shared.end(handle).await {
                Ok(bound) => {
                    for (member, upstream_id) in bound {
                        if !members.contains(&(member.clone(), upstream_id.clone())) {
                            members.push((member, upstream_id));
                        }
                    }
                }
                Err(_) => metrics::shared_store_fallback("session"),
            }
        }
        members
    }

    /// The upstream session the fleet session `id` holds at `member`, if one was opened.
    pub(crate) async fn member(
        &self,
        id: &str,
        member: &str,
    ) -> Result<Option<String>, SessionError> {
        let Some(handle) = handle(id) else {
            return Ok(None);
        };
        if let Some(known) = self.local.member(handle, member) {
            return Ok(Some(known));
        }
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        match shared.member(handle, member).await {
            Ok(Some(bound)) => {
                // Bound at another replica: remembered here, since a binding never changes.
                self.local.bind_member(handle, member, bound.clone());
                Ok(Some(bound))
            }
            Ok(None) => Ok(None),
            Err(e) => self.fallback(e).map(|()| None),
        }
    }

    /// Records the upstream session opened at `member` for the fleet session `id`. If another
    /// request (here or at another replica) bound one first, that one is kept and returned
    /// with `false`: the caller ends its own. `None`: the session has ended.
    pub(crate) async fn bind_member(
        &self,
        id: &str,
        member: &str,
        upstream_id: String,
    ) -> Result<Option<(String, bool)>, SessionError> {
        let Some(handle) = handle(id) else {
            return Ok(None);
        };
        let Some(shared) = &self.shared else {
            return Ok(self.local.bind_member(handle, member, upstream_id));
        };
        match shared
            .bind_member(handle, member, &upstream_id, self.max_lifetime)
            .await
        {
            Ok((kept, _)) => Ok(self
                .local
                .bind_member(handle, member, kept)
                .map(|(kept, _)| {
                    let mine = kept == upstream_id;
                    (kept, mine)
                })),
            Err(e) => {
                self.fallback(e)?;
                Ok(self.local.bind_member(handle, member, upstream_id))
            }
        }
    }

    /// In lenient mode, counts a lookup served by this replica alone; in strict mode, refuses.
    fn fallback(&self, error: StoreError) -> Result<(), SessionError> {
        let strict = self
            .shared
            .as_ref()
            .is_some_and(|shared| shared.store.mode() == SharedMode::Strict);
        if strict {
            return Err(SessionError::Unavailable(error));
        }
        metrics::shared_store_fallback("session");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
