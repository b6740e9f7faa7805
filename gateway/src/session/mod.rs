//! MCP sessions as the agent sees them: ids minted by the gateway, bound to who opened them.
//!
//! An upstream's `Mcp-Session-Id` never reaches the agent. When an upstream opens a session, the
//! gateway mints an id of its own (256 random bits), remembers which upstream session it stands
//! for and which principal (issuer, user, agent) opened it, and rewrites the header both ways.
//! A session id presented with another principal's token, or at another upstream, is unknown:
//! 404, as for an ended session, so a stolen id is worth nothing without the token that goes
//! with it (MCP security best practices, session hijacking). Sessions idle for a day are
//! forgotten.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_policy::Claims;

/// Sessions idle longer than this are forgotten.
const IDLE_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// How many sessions one map may hold before idle ones are swept.
const SWEEP_AT: usize = 100_000;

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

#[derive(Debug)]
struct Entry {
    upstream: String,
    upstream_id: String,
    principal: Principal,
    last_used: Instant,
    /// For a fleet session: the upstream session opened at each member, by member name.
    members: HashMap<String, String>,
}

/// The gateway's session table.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

impl Sessions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a session an upstream opened for `principal`; returns the id the agent sees.
    pub(crate) fn open(&self, upstream: &str, upstream_id: &str, principal: Principal) -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        let id = URL_SAFE_NO_PAD.encode(bytes);
        let mut map = self.map();
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| e.last_used.elapsed() < IDLE_LIMIT);
        }
        map.insert(
            id.clone(),
            Entry {
                upstream: upstream.to_owned(),
                upstream_id: upstream_id.to_owned(),
                principal,
                last_used: Instant::now(),
                members: HashMap::new(),
            },
        );
        id
    }

    /// The upstream session behind `id`, if it exists, is at the upstream named `upstream`, and belongs to
    /// `principal`. Anything else is indistinguishable from an unknown session.
    pub(crate) fn resolve(
        &self,
        id: &str,
        upstream: &str,
        principal: &Principal,
    ) -> Option<String> {
        let mut map = self.map();
        let entry = map.get_mut(id)?;
        if entry.upstream != upstream
            || entry.principal != *principal
            || entry.last_used.elapsed() >= IDLE_LIMIT
        {
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry.upstream_id.clone())
    }

    /// The upstream session a fleet session holds at `member`, if one was opened.
    pub(crate) fn member(&self, id: &str, member: &str) -> Option<String> {
        self.map().get(id)?.members.get(member).cloned()
    }

    /// Records the upstream session opened at `member` for the fleet session `id`. If another
    /// request opened one first, that one is kept and returned (with `false`): the caller
    /// ends its own.
    pub(crate) fn bind_member(
        &self,
        id: &str,
        member: &str,
        upstream_id: String,
    ) -> Option<(String, bool)> {
        let mut map = self.map();
        let entry = map.get_mut(id)?;
        match entry.members.get(member) {
            Some(first) => Some((first.clone(), false)),
            None => {
                entry.members.insert(member.to_owned(), upstream_id.clone());
                Some((upstream_id, true))
            }
        }
    }

    /// Forgets a session (ended by DELETE, or gone upstream); returns a fleet session's member
    /// sessions, to end them too.
    pub(crate) fn end(&self, id: &str) -> Vec<(String, String)> {
        self.map()
            .remove(id)
            .map(|entry| entry.members.into_iter().collect())
            .unwrap_or_default()
    }

    /// Whether no session is known.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.map().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(sub: &str, client: &str) -> Principal {
        Principal {
            issuer: "https://issuer".into(),
            subject: sub.into(),
            client_id: client.into(),
        }
    }

    #[test]
    fn a_session_resolves_only_for_the_principal_and_upstream_that_opened_it() {
        let sessions = Sessions::default();
        let id = sessions.open("a", "upstream-1", principal("alice", "agent-a"));
        assert_ne!(id, "upstream-1", "the upstream id is never shown");
        assert_eq!(id.len(), 43);
        let alice = principal("alice", "agent-a");
        assert_eq!(
            sessions.resolve(&id, "a", &alice).as_deref(),
            Some("upstream-1")
        );
        assert_eq!(
            sessions.resolve(&id, "a", &principal("mallory", "agent-a")),
            None
        );
        assert_eq!(
            sessions.resolve(&id, "a", &principal("alice", "agent-b")),
            None
        );
        assert_eq!(sessions.resolve(&id, "b", &alice), None);
        assert_eq!(sessions.resolve("upstream-1", "a", &alice), None);
    }

    #[test]
    fn an_ended_session_is_unknown() {
        let sessions = Sessions::default();
        let alice = principal("alice", "agent-a");
        let id = sessions.open("a", "u", alice.clone());
        sessions.end(&id);
        assert_eq!(sessions.resolve(&id, "a", &alice), None);
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_fleet_session_keeps_the_first_member_session_and_hands_them_back_at_its_end() {
        let sessions = Sessions::default();
        let id = sessions.open("office", "", principal("alice", "agent-a"));
        assert_eq!(sessions.member(&id, "mail"), None);
        assert_eq!(
            sessions.bind_member(&id, "mail", "m-1".into()),
            Some(("m-1".into(), true))
        );
        assert_eq!(
            sessions.bind_member(&id, "mail", "m-2".into()),
            Some(("m-1".into(), false)),
            "a racing second opening loses"
        );
        assert_eq!(sessions.member(&id, "mail").as_deref(), Some("m-1"));
        assert_eq!(sessions.end(&id), [("mail".to_owned(), "m-1".to_owned())]);
        assert_eq!(sessions.bind_member(&id, "mail", "m-3".into()), None);
    }
}
