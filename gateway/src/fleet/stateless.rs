//! Which fleet members speak the stateless revision (2026-07-28), as they last said: a fleet
//! checks on every request of that revision, so members are not asked each time.

use crate::upstream::Upstream;

/// How long a member's answer to `server/discover` is trusted.
const DISCOVERY_TTL_SECONDS: i64 = 60;

/// Which members speak the stateless revision, as they last said (for a minute): a fleet
/// checks it on every 2026-07-28 request, and members are not asked each time.
#[derive(Debug, Default)]
pub(crate) struct StatelessMembers {
    /// By member name and endpoint: whether it does, and when it said so.
    known: std::sync::Mutex<std::collections::HashMap<(String, String), (bool, i64)>>,
}

impl StatelessMembers {
    fn key(member: &Upstream) -> (String, String) {
        (
            member.name.clone(),
            format!("{}{}", member.authority, member.path),
        )
    }

    pub(crate) fn get(&self, member: &Upstream, now: i64) -> Option<bool> {
        let known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(&Self::key(member))
            .filter(|(_, at)| now - at < DISCOVERY_TTL_SECONDS)
            .map(|(speaks, _)| *speaks)
    }

    pub(crate) fn set(&self, member: &Upstream, speaks: bool, now: i64) {
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.insert(Self::key(member), (speaks, now));
    }
}
