//! Local controls an operator uses on one gateway without the issuer: kill a session, agent,
//! user, grant or token now, and freeze changes (deny every `tools/call` matching a pattern,
//! say `k8s/*delete*`, until lifted).
//!
//! They are served on the admin listener under `/control/*` and need the gateway's admin token
//! (`Authorization: Bearer`); without a configured token they do not exist. Every use is logged
//! on the `audit` tracing target. A local kill ends live work like an issuer revocation but is
//! not shared: other gateways and the issuer know nothing of it, and it ends when the gateway
//! restarts. Revoke at the issuer for anything meant to last.

use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_policy::freeze::FreezePattern;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The gateway's local controls.
#[derive(Debug)]
pub(crate) struct Controls {
    token_hash: Option<[u8; 32]>,
    freezes: ArcSwap<Vec<FreezePattern>>,
    /// The issuer's freezes, as its revocation stream last said (replaced whole each time).
    fleet_freezes: ArcSwap<Vec<FreezePattern>>,
}

impl Controls {
    /// Controls protected by `admin_token`; `None` disables them.
    pub(crate) fn new(admin_token: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            token_hash: admin_token.map(|t| Sha256::digest(t.as_bytes()).into()),
            freezes: ArcSwap::from_pointee(Vec::new()),
            fleet_freezes: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// Whether the controls are enabled at all.
    pub(crate) fn enabled(&self) -> bool {
        self.token_hash.is_some()
    }

    /// Whether `authorization` carries the admin token (compared in constant time).
    pub(crate) fn authorized(&self, authorization: Option<&str>) -> bool {
        let (Some(expected), Some(presented)) = (
            &self.token_hash,
            authorization.and_then(|v| v.strip_prefix("Bearer ")),
        ) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(expected).into()
    }

    /// The freeze pattern `tool` falls under, this gateway's own or the issuer's, if any.
    pub(crate) fn frozen(&self, tool: &str) -> Option<FreezePattern> {
        let (local, fleet) = (self.freezes.load(), self.fleet_freezes.load());
        local
            .iter()
            .chain(fleet.iter())
            .find(|p| p.matches(tool))
            .cloned()
    }

    /// Replaces the issuer's freezes (whatever an issuer says holds, even without an admin
    /// token here).
    pub(crate) fn set_fleet_freezes(&self, freezes: Vec<FreezePattern>) {
        self.fleet_freezes.store(Arc::new(freezes));
    }

    /// This gateway's own freezes.
    pub(crate) fn freezes(&self) -> Vec<FreezePattern> {
        self.freezes.load().as_ref().clone()
    }

    /// Adds a freeze; returns whether it is new.
    pub(crate) fn freeze(&self, pattern: FreezePattern) -> bool {
        let mut added = false;
        self.freezes.rcu(|current| {
            let mut next = current.as_ref().clone();
            added = !next.contains(&pattern);
            if added {
                next.push(pattern.clone());
            }
            next
        });
        added
    }

    /// Lifts a freeze; returns whether it existed.
    pub(crate) fn unfreeze(&self, pattern: &FreezePattern) -> bool {
        let mut removed = false;
        self.freezes.rcu(|current| {
            let next: Vec<FreezePattern> =
                current.iter().filter(|p| *p != pattern).cloned().collect();
            removed = next.len() != current.len();
            next
        });
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> FreezePattern {
        FreezePattern::try_from(p.to_owned()).unwrap()
    }

    #[test]
    fn freezes_are_added_once_and_lifted() {
        let controls = Controls::new(Some("secret-token-for-tests"));
        assert!(controls.freeze(pattern("k8s/*")));
        assert!(!controls.freeze(pattern("k8s/*")));
        assert_eq!(controls.frozen("k8s/apply"), Some(pattern("k8s/*")));
        assert!(controls.unfreeze(&pattern("k8s/*")));
        assert_eq!(controls.frozen("k8s/apply"), None);
    }

    #[test]
    fn the_issuers_freezes_hold_beside_local_ones_and_are_replaced_whole() {
        let controls = Controls::new(None);
        controls.set_fleet_freezes(vec![pattern("payroll/*")]);
        assert_eq!(controls.frozen("payroll/run"), Some(pattern("payroll/*")));
        assert!(controls.freezes().is_empty());
        controls.set_fleet_freezes(Vec::new());
        assert_eq!(controls.frozen("payroll/run"), None);
    }

    #[test]
    fn only_the_admin_token_is_authorized() {
        let controls = Controls::new(Some("secret-token-for-tests"));
        assert!(controls.authorized(Some("Bearer secret-token-for-tests")));
        assert!(!controls.authorized(Some("Bearer secret-token-for-test")));
        assert!(!controls.authorized(None));
        assert!(!Controls::new(None).authorized(Some("Bearer anything")));
    }
}
