//! The revoked set: what this gateway knows has been revoked, and how fresh that knowledge is.
//!
//! It lives in an `ArcSwap`: every request checks its token against it without a lock. Entries
//! come from the issuer (see `follower`) or from an operator's local kill at this gateway, kept
//! apart with negative sequence numbers so the issuer's numbering stays the stream's resume
//! point. In `strict` mode a request is refused once the knowledge is older than a bound; in
//! `lenient` mode (the default) it is served on the last known state, which token lifetimes
//! bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use portcullis_policy::VerifiedToken;
use portcullis_policy::revocation::{RevocationEntry, RevocationKind, RevokedSet, target_hash};

use crate::config::StalenessMode;

/// How long a local kill is held (the tokens it covers are shorter-lived than this).
const LOCAL_KILL_TTL: i64 = 24 * 3600;

/// The revoked set of one gateway and its freshness.
#[derive(Debug)]
pub(super) struct Revoked {
    set: ArcSwap<RevokedSet>,
    /// Kills an operator made at this gateway only; negative sequence numbers.
    local: ArcSwap<RevokedSet>,
    local_seq: AtomicI64,
    fresh_at: AtomicI64,
    mode: StalenessMode,
    max_staleness: i64,
}

impl Revoked {
    /// Empty knowledge, not yet fresh.
    pub(super) fn new(mode: StalenessMode, max_staleness: i64) -> Self {
        Self {
            set: ArcSwap::from_pointee(RevokedSet::new()),
            local: ArcSwap::from_pointee(RevokedSet::new()),
            local_seq: AtomicI64::new(0),
            fresh_at: AtomicI64::new(0),
            mode,
            max_staleness,
        }
    }

    /// The entry revoking this token or session, if any.
    pub(super) fn covering(
        &self,
        token: &VerifiedToken,
        session_id: Option<&str>,
    ) -> Option<RevocationEntry> {
        let check = |set: &RevokedSet| {
            set.covering(token.claims())
                .or_else(|| session_id.and_then(|s| set.covering_session(s)))
                .cloned()
        };
        check(&self.set.load()).or_else(|| {
            let local = self.local.load();
            if local.is_empty() {
                None
            } else {
                check(&local)
            }
        })
    }

    /// Adds a local kill of everything `value` of `kind` covers, held until the gateway
    /// restarts (or a day has passed).
    pub(super) fn add_local(&self, kind: RevocationKind, value: &str, now: i64) -> RevocationEntry {
        let entry = RevocationEntry {
            seq: self.local_seq.fetch_sub(1, Ordering::AcqRel) - 1,
            kind,
            target: target_hash(kind, value),
            revoked_at: now,
            issued_before: matches!(kind, RevocationKind::Agent | RevocationKind::User)
                .then_some(now),
            expires_at: now + LOCAL_KILL_TTL,
        };
        self.local.rcu(|current| {
            let mut next = RevokedSet::clone(current);
            next.prune(now);
            next.insert(entry.clone());
            next
        });
        entry
    }

    /// Stores the entries not yet known (and not yet expired) and returns them.
    pub(super) fn add(&self, entries: Vec<RevocationEntry>, now: i64) -> Vec<RevocationEntry> {
        let current = self.set.load();
        let fresh: Vec<RevocationEntry> = entries
            .into_iter()
            .filter(|e| e.seq > current.version() && e.expires_at > now)
            .collect();
        if fresh.is_empty() {
            return fresh;
        }
        let mut next = RevokedSet::clone(&current);
        for entry in &fresh {
            next.insert(entry.clone());
            crate::metrics::revocation_applied(entry.kind.as_str(), now - entry.revoked_at);
        }
        next.prune(now);
        self.set.store(Arc::new(next));
        fresh
    }

    /// The highest sequence number applied.
    pub(super) fn version(&self) -> i64 {
        self.set.load().version()
    }

    /// Seconds since the knowledge was last confirmed current.
    pub(super) fn staleness(&self, now: i64) -> i64 {
        now - self.fresh_at.load(Ordering::Acquire)
    }

    /// Whether requests must be refused for stale knowledge (strict mode only).
    pub(super) fn refuses_for_staleness(&self, now: i64) -> bool {
        self.mode == StalenessMode::Strict && self.staleness(now) > self.max_staleness
    }

    /// Records that the knowledge was current at `at`.
    pub(super) fn confirm_fresh(&self, at: i64) {
        self.fresh_at.fetch_max(at, Ordering::AcqRel);
    }
}
