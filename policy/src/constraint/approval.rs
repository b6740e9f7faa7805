//! Approval terms: the `approval` entries of an `mcp_tools` detail, validated.
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
//! Which calls a term applies to, and what they then need, is judged with the other rules in
//! the decision module (`ApprovalTerm::applies`, `Requirement::of`); the wire between gateway
//! and issuer, and the digest an approval is bound to, are in the approval module.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConstraintError, Limit, ToolPattern};

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
    pub(crate) tool: ToolPattern,
    /// Conditions as limits on `tool`, so the limit language (and its checks) is reused.
    pub(crate) when: Vec<Limit>,
    pub(crate) four_eyes: Vec<String>,
    pub(crate) valid_for: u32,
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
