//! Step-up approval: calls a person must approve, one exact call at a time, before they run.
//!
//! An approval term is part of a grant's `mcp_tools` entry:
//!
//! ```json
//! "approval": [{"tool": "expenses/submit_expense",
//!               "when": [{"pointer": "/amount", "min": 200}],
//!               "four_eyes": ["carol", "dave"],
//!               "valid_for": 300}]
//! ```
//!
//! - `tool`: the tools the term covers (a pattern);
//! - `when`: conditions in the limit language, all of which must hold for the term to apply
//!   (absent = every call). A condition that cannot be read (the argument is missing or of
//!   another type) counts as holding: when in doubt, a person is asked;
//! - `four_eyes`: besides the user, one of these people (never the user) must approve too;
//! - `valid_for`: seconds an approval stays good for once given (default 300).
//!
//! An approval is bound to one call: the tool and the SHA-256 of its arguments in the JSON
//! Canonicalization Scheme (RFC 8785, [`arguments_digest`]), so the same arguments in another
//! key order are the same call and any other value is another.
//!
//! Terms only accumulate: a delegated token keeps every term of its parent
//! ([`attenuate`](crate::attenuate)), so a call a parent would have sent to a person is sent
//! to a person (at least as strict a one) by every descendant.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::constraint::{ConstraintError, Limit, ToolPattern};
use crate::decision::{DenyReason, check_limit};

/// How long an approval stays good for when a term does not say.
pub const DEFAULT_VALID_FOR: u32 = 300;
/// The longest a term may keep an approval good for: a day.
pub const MAX_VALID_FOR: u32 = 86_400;
/// The most second approvers a term may name.
const MAX_APPROVERS: usize = 64;

/// One approval term, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawApprovalTerm", into = "RawApprovalTerm")]
pub struct ApprovalTerm {
    tool: ToolPattern,
    /// Conditions as limits on `tool`, so the limit language (and its checks) is reused.
    when: Vec<Limit>,
    four_eyes: Vec<String>,
    valid_for: u32,
}

/// The wire form of an approval term.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovalTerm {
    tool: ToolPattern,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    when: Vec<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    four_eyes: Vec<String>,
    #[serde(default = "default_valid_for")]
    valid_for: u32,
}

fn default_valid_for() -> u32 {
    DEFAULT_VALID_FOR
}

impl TryFrom<RawApprovalTerm> for ApprovalTerm {
    type Error = ConstraintError;

    fn try_from(raw: RawApprovalTerm) -> Result<Self, Self::Error> {
        let invalid = |reason: &str| ConstraintError::InvalidApproval(reason.to_owned());
        if raw.valid_for == 0 || raw.valid_for > MAX_VALID_FOR {
            return Err(invalid("valid_for is 1 to 86400 seconds"));
        }
        if raw.four_eyes.len() > MAX_APPROVERS
            || raw
                .four_eyes
                .iter()
                .any(|name| name.is_empty() || name.len() > 256)
        {
            return Err(invalid("four_eyes names 1 to 64 people by user name"));
        }
        let when = raw
            .when
            .into_iter()
            .map(|mut condition| {
                if condition.contains_key("tool") {
                    return Err(invalid("a condition takes the term's tool; drop \"tool\""));
                }
                condition.insert("tool".into(), Value::String(raw.tool.to_string()));
                let limit = Limit::deserialize(Value::Object(condition))
                    .map_err(|e| invalid(&e.to_string()))?;
                limit.validate()?;
                Ok(limit)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            tool: raw.tool,
            when,
            four_eyes: raw.four_eyes,
            valid_for: raw.valid_for,
        })
    }
}

impl From<ApprovalTerm> for RawApprovalTerm {
    fn from(term: ApprovalTerm) -> Self {
        let when = term
            .when
            .into_iter()
            .map(|limit| match serde_json::to_value(limit) {
                Ok(Value::Object(mut condition)) => {
                    condition.remove("tool");
                    condition
                }
                _ => unreachable!("a limit serialises to an object"),
            })
            .collect();
        RawApprovalTerm {
            tool: term.tool,
            when,
            four_eyes: term.four_eyes,
            valid_for: term.valid_for,
        }
    }
}

impl ApprovalTerm {
    /// The tools it covers.
    pub fn tool(&self) -> &ToolPattern {
        &self.tool
    }

    /// The people one of whom must approve besides the user; empty = the user alone.
    pub fn four_eyes(&self) -> &[String] {
        &self.four_eyes
    }

    /// Seconds an approval stays good for.
    pub fn valid_for(&self) -> u32 {
        self.valid_for
    }

    /// Whether a call of `tool` with `arguments` (an object) needs this term's approval.
    pub fn applies(&self, tool: &str, arguments: &Value) -> bool {
        self.tool.matches(tool)
            && self
                .when
                .iter()
                .all(|condition| match check_limit(condition, arguments) {
                    Ok(()) => true,
                    // Unreadable: ask a person rather than guess.
                    Err(
                        DenyReason::ArgumentMissing { .. } | DenyReason::ArgumentWrongType { .. },
                    ) => true,
                    Err(_) => false,
                })
    }

    /// Whether this term asks at least as much as `other` of every call `other` applies to:
    /// the same tools or more, conditions no narrower, second approvers no wider, and no
    /// longer a validity.
    pub fn at_least_as_strict_as(&self, other: &ApprovalTerm) -> bool {
        self.tool.covers(&other.tool)
            && self.when.iter().all(|mine| {
                other
                    .when
                    .iter()
                    .any(|theirs| theirs.pointer == mine.pointer && implies(theirs, mine))
            })
            && (other.four_eyes.is_empty()
                || (!self.four_eyes.is_empty()
                    && self.four_eyes.iter().all(|p| other.four_eyes.contains(p))))
            && self.valid_for <= other.valid_for
    }

    /// The term in plain words.
    pub fn describe(&self) -> String {
        let mut line = format!("needs the user's approval for each call of {}", self.tool);
        if !self.when.is_empty() {
            let conditions: Vec<String> = self.when.iter().map(|c| c.to_string()).collect();
            line.push_str(&format!(" when {}", conditions.join(" and ")));
        }
        if !self.four_eyes.is_empty() {
            line.push_str(&format!(
                ", and a second approval from one of {}",
                self.four_eyes.join(", ")
            ));
        }
        line.push_str(&format!(
            " (an approval is good for {})",
            plain_duration(self.valid_for)
        ));
        line
    }
}

/// Whether every value `narrow` accepts is accepted by `wide` (both on one argument): the
/// condition `wide` holds wherever `narrow` does.
fn implies(narrow: &Limit, wide: &Limit) -> bool {
    let within = |lo: Option<f64>, hi: Option<f64>| {
        wide.max.is_none_or(|w| hi.is_some_and(|n| n <= w))
            && wide.min.is_none_or(|w| lo.is_some_and(|n| n >= w))
    };
    within(narrow.min, narrow.max)
        && wide.one_of.as_ref().is_none_or(|w| {
            narrow
                .one_of
                .as_ref()
                .is_some_and(|n| n.iter().all(|v| w.contains(v)))
        })
        && wide
            .eq
            .as_ref()
            .is_none_or(|w| narrow.eq.as_ref() == Some(w))
        && wide.prefix.as_ref().is_none_or(|w| {
            narrow
                .prefix
                .as_ref()
                .is_some_and(|n| n.starts_with(w.as_str()))
        })
}

fn plain_duration(seconds: u32) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// What a gateway asks the keeper of approvals (the issuer's `POST /approvals`) about one
/// call that needs a person's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallToApprove {
    /// The grant (`gid`).
    pub grant_id: String,
    /// The token that made the call (`jti`).
    pub token_id: String,
    /// The user (`sub`).
    pub sub: String,
    /// The agents, current actor first (as in `act`).
    pub act: Vec<String>,
    /// The upstream's name.
    pub upstream: String,
    /// The full `upstream/tool` name.
    pub tool: String,
    /// The call's arguments, as sent.
    pub arguments: Value,
    /// What the token's approval terms require.
    pub requirement: Requirement,
    /// The asking gateway (its audit id), recorded when it spends an approval.
    pub gateway: String,
}

/// The answer about a [`CallToApprove`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer {
    /// Approved, and now spent on this call: forward it.
    Approved {
        /// The approval's id, for the decision log.
        id: String,
    },
    /// Waiting for a person at `url`.
    Pending {
        /// The request's id.
        id: String,
        /// The approval page.
        url: String,
        /// When the request lapses (Unix seconds).
        expires_at: i64,
    },
    /// A person refused this call.
    Denied {
        /// The request's id.
        id: String,
    },
    /// The grant is revoked: no approval can be given for it.
    Void,
}

/// What a call needs before it may run: the combination of every term that applies to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Besides the user's approval, a second one from one of these people (never the user),
    /// when an applying term asks for four eyes; with several such terms, from someone every
    /// one of them names. `Some` and empty: those terms share nobody, so no second approval
    /// can be given and the call can never run. `None`: the user alone approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub four_eyes: Option<Vec<String>>,
    /// Seconds an approval stays good for: the shortest of the applying terms'.
    pub valid_for: u32,
}

impl Requirement {
    /// The requirement of every term in `terms` that applies to the call, if any does.
    pub fn of(terms: &[ApprovalTerm], tool: &str, arguments: &Value) -> Option<Self> {
        let mut applying = terms
            .iter()
            .filter(|t| t.applies(tool, arguments))
            .peekable();
        applying.peek()?;
        let mut requirement = Requirement {
            four_eyes: None,
            valid_for: MAX_VALID_FOR,
        };
        for term in applying {
            requirement.valid_for = requirement.valid_for.min(term.valid_for);
            if term.four_eyes.is_empty() {
                continue;
            }
            match &mut requirement.four_eyes {
                Some(people) => people.retain(|p| term.four_eyes.contains(p)),
                None => requirement.four_eyes = Some(term.four_eyes.clone()),
            }
        }
        Some(requirement)
    }
}

/// The digest an approval is bound to: base64url(SHA-256(RFC 8785 canonical form of the
/// arguments)). Absent arguments are the empty object.
pub fn arguments_digest(arguments: &Value) -> String {
    let canonical = match arguments {
        Value::Null => b"{}".to_vec(),
        value => serde_jcs::to_vec(value).expect("a JSON value always canonicalises"),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn term(value: Value) -> ApprovalTerm {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_term_round_trips_without_repeating_its_tool_in_conditions() {
        let wire = json!({"tool": "expenses/submit_expense",
                          "when": [{"pointer": "/amount", "min": 200}],
                          "four_eyes": ["carol"], "valid_for": 600});
        assert_eq!(serde_json::to_value(term(wire.clone())).unwrap(), wire);
        let defaulted = term(json!({"tool": "k8s/delete_*"}));
        assert_eq!(defaulted.valid_for(), DEFAULT_VALID_FOR);
    }

    #[test]
    fn a_term_reads_in_plain_words() {
        let t = term(json!({"tool": "expenses/submit_expense",
                            "when": [{"pointer": "/amount", "min": 200}],
                            "four_eyes": ["carol", "dave"], "valid_for": 600}));
        assert_eq!(
            t.describe(),
            "needs the user's approval for each call of expenses/submit_expense when /amount ≥ 200, \
             and a second approval from one of carol, dave (an approval is good for 10 min)"
        );
    }

    #[test]
    fn bad_terms_are_refused() {
        for bad in [
            json!({"tool": "a/b", "valid_for": 0}),
            json!({"tool": "a/b", "valid_for": 86_401}),
            json!({"tool": "a/b", "when": [{"pointer": "/x"}]}),
            json!({"tool": "a/b", "when": [{"tool": "a/c", "pointer": "/x", "max": 1}]}),
            json!({"tool": "a/b", "four_eyes": [""]}),
            json!({"tool": "a/b", "approvers": ["x"]}),
        ] {
            assert!(
                serde_json::from_value::<ApprovalTerm>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_condition_decides_which_calls_need_approval_and_doubt_asks() {
        let t = term(json!({"tool": "expenses/submit_expense",
                            "when": [{"pointer": "/amount", "min": 200}]}));
        let tool = "expenses/submit_expense";
        assert!(!t.applies(tool, &json!({"amount": 150})));
        assert!(t.applies(tool, &json!({"amount": 300})));
        assert!(t.applies(tool, &json!({"amount": "300"})), "wrong type");
        assert!(t.applies(tool, &json!({})), "missing");
        assert!(!t.applies("expenses/list_expenses", &json!({"amount": 300})));
    }

    #[test]
    fn applying_terms_combine_to_the_strictest_requirement() {
        let terms = [
            term(json!({"tool": "pay/*", "four_eyes": ["carol", "dave"], "valid_for": 600})),
            term(json!({"tool": "pay/send", "four_eyes": ["dave", "erin"], "valid_for": 120})),
            term(json!({"tool": "pay/refund", "four_eyes": ["erin"]})),
        ];
        assert_eq!(
            Requirement::of(&terms, "pay/send", &json!({})),
            Some(Requirement {
                four_eyes: Some(vec!["dave".into()]),
                valid_for: 120
            })
        );
        let nobody = Requirement::of(&terms, "pay/refund", &json!({})).unwrap();
        assert_eq!(nobody.four_eyes, Some(Vec::new()));
        assert_eq!(Requirement::of(&terms, "mail/send", &json!({})), None);
    }

    #[test]
    fn the_digest_ignores_key_order_and_whitespace_but_not_values() {
        let a: Value =
            serde_json::from_str(r#"{"amount": 300, "note": {"b": 1, "a": 2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"note":{"a":2,"b":1},"amount":300}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"note":{"a":2,"b":1},"amount":301}"#).unwrap();
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        assert_ne!(arguments_digest(&a), arguments_digest(&c));
        assert_eq!(arguments_digest(&Value::Null), arguments_digest(&json!({})));
    }

    #[test]
    fn strictness_compares_tools_conditions_people_and_time() {
        let base = term(json!({"tool": "expenses/submit_expense",
                               "when": [{"pointer": "/amount", "min": 200}]}));
        let wider = term(json!({"tool": "expenses/*",
                                "when": [{"pointer": "/amount", "min": 100}], "valid_for": 60}));
        let looser = term(json!({"tool": "expenses/submit_expense",
                                 "when": [{"pointer": "/amount", "min": 500}]}));
        let longer = term(json!({"tool": "expenses/submit_expense",
                                 "when": [{"pointer": "/amount", "min": 200}], "valid_for": 3600}));
        assert!(wider.at_least_as_strict_as(&base));
        assert!(base.at_least_as_strict_as(&base));
        assert!(!looser.at_least_as_strict_as(&base));
        assert!(!longer.at_least_as_strict_as(&base));
        assert!(!base.at_least_as_strict_as(&wider));
    }
}
