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
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A freeze pattern: a tool name (`upstream/tool`) with `*` matching any run of characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FreezePattern(String);

impl TryFrom<String> for FreezePattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let valid = !text.is_empty()
            && text.len() <= 256
            && text.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/' | b'*')
            });
        if valid {
            Ok(Self(text))
        } else {
            Err(format!(
                "{text:?} is not a pattern of [A-Za-z0-9_./-] and '*'"
            ))
        }
    }
}

impl From<FreezePattern> for String {
    fn from(pattern: FreezePattern) -> Self {
        pattern.0
    }
}

impl FreezePattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `tool` matches, `*` standing for any run of characters.
    pub fn matches(&self, tool: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = tool.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty(); // no '*': exact match
        };
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        rest.ends_with(last)
    }
}

/// The gateway's local controls.
#[derive(Debug)]
pub(crate) struct Controls {
    token_hash: Option<[u8; 32]>,
    freezes: ArcSwap<Vec<FreezePattern>>,
}

impl Controls {
    /// Controls protected by `admin_token`; `None` disables them.
    pub(crate) fn new(admin_token: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            token_hash: admin_token.map(|t| Sha256::digest(t.as_bytes()).into()),
            freezes: ArcSwap::from_pointee(Vec::new()),
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

    /// The freeze pattern `tool` falls under, if any.
    pub(crate) fn frozen(&self, tool: &str) -> Option<FreezePattern> {
        self.freezes
            .load()
            .iter()
            .find(|p| p.matches(tool))
            .cloned()
    }

    /// Current freezes.
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
    fn a_freeze_pattern_matches_with_wildcards_anywhere() {
        let p = pattern("k8s/*delete*");
        assert!(p.matches("k8s/delete_pod"));
        assert!(p.matches("k8s/force_delete"));
        assert!(!p.matches("k8s/get_pods"));
        assert!(!p.matches("payroll/delete_all"));
        assert!(pattern("expenses/submit_expense").matches("expenses/submit_expense"));
        assert!(!pattern("expenses/submit").matches("expenses/submit_expense"));
        assert!(pattern("*").matches("anything/at_all"));
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
    fn only_the_admin_token_is_authorized() {
        let controls = Controls::new(Some("secret-token-for-tests"));
        assert!(controls.authorized(Some("Bearer secret-token-for-tests")));
        assert!(!controls.authorized(Some("Bearer secret-token-for-test")));
        assert!(!controls.authorized(None));
        assert!(!Controls::new(None).authorized(Some("Bearer anything")));
    }

    #[test]
    fn patterns_with_other_characters_are_refused() {
        assert!(FreezePattern::try_from("k8s/(delete)".to_owned()).is_err());
        assert!(FreezePattern::try_from(String::new()).is_err());
    }
}
