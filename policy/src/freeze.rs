//! Change freezes: while a freeze is in force, every `tools/call` whose tool (`upstream/tool`)
//! matches its pattern is refused, whatever the grant says. An operator sets one at the issuer
//! (pushed to every gateway with the revocations) or on one gateway alone, and lifts it when
//! the change window closes.

use serde::{Deserialize, Serialize};

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
    fn patterns_with_other_characters_are_refused() {
        assert!(FreezePattern::try_from("k8s/(delete)".to_owned()).is_err());
        assert!(FreezePattern::try_from(String::new()).is_err());
    }
}
