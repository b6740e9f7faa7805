//! What this replica knows of sessions: when each was last used here, which have ended, and
//! a fleet session's member sessions.
//!
//! It is the whole truth for a gateway without a shared store, and with one it is the cache
//! of member sessions (a member's upstream session, once bound, never changes) and the
//! fallback while the store cannot answer. An id sealed by another replica and never seen
//! here is live until it is used, ends or ages out. An ended or idle session stays here as a
//! tombstone until its id ages out, so forgetting it can never bring it back.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How many sessions are held before those whose ids have aged out are swept.
const SWEEP_AT: usize = 100_000;

/// What this replica knows of one session.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Known {
    /// Used here within the idle timeout, or never seen here.
    Live,
    /// Unused here for longer than the idle timeout.
    Idle,
    /// Ended here (by `DELETE`, or an upstream's 404).
    Ended,
}

#[derive(Debug)]
struct Entry {
    /// `None` once ended.
    last_used: Option<Instant>,
    /// When the id ages out, in Unix seconds: the entry may go then.
    expires_at: i64,
    /// A fleet session's upstream session at each member, by member name.
    members: HashMap<String, String>,
}

/// This replica's session table, by handle.
#[derive(Debug, Default)]
pub(super) struct LocalSessions {
    map: Mutex<HashMap<String, Entry>>,
}

impl LocalSessions {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry of `handle`, made live now if it is new; sweeps aged-out entries first when
    /// the table is full.
    fn entry<'m>(
        map: &'m mut HashMap<String, Entry>,
        handle: &str,
        expires_at: i64,
        now: i64,
    ) -> &'m mut Entry {
        if map.len() >= SWEEP_AT && !map.contains_key(handle) {
            map.retain(|_, entry| entry.expires_at > now);
        }
        map.entry(handle.to_owned()).or_insert_with(|| Entry {
            last_used: Some(Instant::now()),
            expires_at,
            members: HashMap::new(),
        })
    }

    /// Records a session opened here.
    pub(super) fn open(&self, handle: &str, expires_at: i64, now: i64) {
        Self::entry(&mut self.map(), handle, expires_at, now);
    }

    /// What this replica knows of `handle`, marking it used when it is live.
    pub(super) fn touch(&self, handle: &str, expires_at: i64, now: i64, idle: Duration) -> Known {
        let mut map = self.map();
        let entry = Self::entry(&mut map, handle, expires_at, now);
        match entry.last_used {
            None => Known::Ended,
            Some(last) if last.elapsed() >= idle => Known::Idle,
            Some(_) => {
                entry.last_used = Some(Instant::now());
                Known::Live
            }
        }
    }

    /// Marks a session used here that the shared store found live, whatever this replica
    /// knew: its last use here is the fallback's knowledge while the store cannot answer.
    pub(super) fn used(&self, handle: &str) {
        if let Some(entry) = self.map().get_mut(handle)
            && entry.last_used.is_some()
        {
            entry.last_used = Some(Instant::now());
        }
    }

    /// Marks `handle` ended; returns the member sessions known here, to end them too.
    pub(super) fn end(&self, handle: &str, expires_at: i64, now: i64) -> Vec<(String, String)> {
        let mut map = self.map();
        let entry = Self::entry(&mut map, handle, expires_at, now);
        entry.last_used = None;
        std::mem::take(&mut entry.members).into_iter().collect()
    }

    /// The upstream session known here at `member`.
    pub(super) fn member(&self, handle: &str, member: &str) -> Option<String> {
        self.map().get(handle)?.members.get(member).cloned()
    }

    /// Records `upstream_id` at `member` unless one is known, and returns the one kept, with
    /// whether it is `upstream_id`. `None` if the session has ended or is unknown here.
    pub(super) fn bind_member(
        &self,
        handle: &str,
        member: &str,
        upstream_id: String,
    ) -> Option<(String, bool)> {
        let mut map = self.map();
        let entry = map.get_mut(handle).filter(|e| e.last_used.is_some())?;
        match entry.members.get(member) {
            Some(first) => Some((first.clone(), first == &upstream_id)),
            None => {
                entry.members.insert(member.to_owned(), upstream_id.clone());
                Some((upstream_id, true))
            }
        }
    }

    /// How many sessions are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_sealed_elsewhere_is_live_here_until_it_ends() {
        let local = LocalSessions::default();
        assert_eq!(local.touch("h", 100, 0, IDLE), Known::Live);
        assert_eq!(local.end("h", 100, 0), []);
        assert_eq!(local.touch("h", 100, 0, IDLE), Known::Ended);
        assert_eq!(local.bind_member("h", "mail", "m".into()), None);
    }

    #[test]
    fn an_idle_session_stays_idle() {
        let local = LocalSessions::default();
        local.open("h", 100, 0);
        assert_eq!(local.touch("h", 100, 0, Duration::ZERO), Known::Idle);
        assert_eq!(local.touch("h", 100, 0, IDLE), Known::Live);
    }

    #[test]
    fn tombstones_are_swept_only_once_their_ids_age_out() {
        let local = LocalSessions::default();
        local.end("ended", 10, 0);
        for i in 0..SWEEP_AT {
            local.open(&format!("s{i}"), 20, 0);
        }
        // Full, before either ages out: nothing goes.
        local.open("one-more", 20, 5);
        assert_eq!(local.len(), SWEEP_AT + 2);
        assert_eq!(local.touch("ended", 10, 5, IDLE), Known::Ended);
        // After the tombstone's id aged out, it may go: the id itself is refused by then.
        local.open("and-another", 20, 11);
        assert_eq!(local.member("ended", "mail"), None);
        assert_eq!(local.len(), SWEEP_AT + 2);
    }

    #[test]
    fn the_first_member_session_bound_is_kept() {
        let local = LocalSessions::default();
        local.open("h", 100, 0);
        assert_eq!(
            local.bind_member("h", "mail", "m-1".into()),
            Some(("m-1".into(), true))
        );
        assert_eq!(
            local.bind_member("h", "mail", "m-2".into()),
            Some(("m-1".into(), false))
        );
        assert_eq!(local.member("h", "mail").as_deref(), Some("m-1"));
        assert_eq!(local.end("h", 100, 0), [("mail".into(), "m-1".into())]);
    }
}
