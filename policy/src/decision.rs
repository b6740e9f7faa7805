//! Authorization decisions: may this token make this tool call, now, with these arguments?
//!
//! A decision is data. [`Decision::Deny`] carries a [`DenyReason`] that names the rule that
//! failed, with the values involved, so the gateway can tell the agent exactly why (without
//! listing tools it may not see) and the audit log can record it. [`Decision::Permit`] carries a
//! [`Permit`], the proof that a call was judged; code that forwards a call takes a `Permit`.
//!
//! Rules are checked in a fixed order (deny patterns, allow patterns, windows, limits) and the
//! first failure is reported, so the same call always gets the same reason.
//!
//! Long because every rule's refusal is a `DenyReason` variant with its code, text and pointer,
//! next to the one function that checks them in their fixed order.

use std::fmt;

use serde_json::Value;

use crate::approval::{Requirement, arguments_digest};
use crate::constraint::{ApprovalTerm, Constraints, Limit, MAX_VALID_FOR, Rate};
use crate::verify::VerifiedToken;

/// A tool call to judge.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    /// Full tool name, `upstream/tool`.
    pub tool: &'a str,
    /// The call's `arguments` object (`Value::Null` when absent).
    pub arguments: &'a Value,
    /// When the call is made, in seconds since the Unix epoch.
    pub at: i64,
    /// What the tool's definition says of itself, when that definition is pinned (and so
    /// trusted); `None` otherwise.
    pub hints: Option<ToolHints>,
}

/// What a tool's definition says of itself in its MCP `annotations`: the server's own claims,
/// to be trusted only for a definition an operator pinned, since a server could otherwise
/// call any tool read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolHints {
    /// `readOnlyHint: true`: it changes nothing.
    pub read_only: bool,
    /// It may destroy or overwrite: not read-only, and `destructiveHint` is not `false` (the
    /// MCP default is `true`).
    pub destructive: bool,
}

impl ToolHints {
    /// The hints of a tool definition's `annotations` (absent or `null` annotations: neither
    /// read-only nor known to be harmless).
    pub fn from_annotations(annotations: &Value) -> Self {
        let read_only = annotations["readOnlyHint"] == Value::Bool(true);
        let harmless = annotations["destructiveHint"] == Value::Bool(false);
        Self {
            read_only,
            destructive: !read_only && !harmless,
        }
    }
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum Decision {
    /// The call may proceed.
    Permit(Permit),
    /// The call may proceed once a person approves this exact call.
    NeedsApproval(ApprovalNeeded),
    /// The call must not reach the upstream.
    Deny(DenyReason),
}

/// Proof that a call was authorized, naming the grant and token that allowed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Permit {
    grant_id: Option<String>,
    token_id: String,
    rate: Option<Rate>,
    approval: Option<String>,
}

impl Permit {
    /// The root grant the token descends from.
    pub fn grant_id(&self) -> Option<&str> {
        self.grant_id.as_deref()
    }

    /// The `jti` of the token that allowed the call.
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    /// The token's rate cap, for the enforcer that holds call counts.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// The approval that let the call through, when it needed one.
    pub fn approval(&self) -> Option<&str> {
        self.approval.as_deref()
    }
}

/// A call every other rule allows, waiting for a person's approval of exactly this call.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalNeeded {
    permit: Permit,
    tool: String,
    digest: String,
    requirement: Requirement,
}

impl ApprovalNeeded {
    /// The full `upstream/tool` name.
    pub fn tool(&self) -> &str {
        &self.tool
    }

    /// The digest of the call's arguments the approval must name
    /// ([`arguments_digest`](crate::approval::arguments_digest)).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Who must approve, and for how long an approval is good.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    /// The root grant the token descends from.
    pub fn grant_id(&self) -> Option<&str> {
        self.permit.grant_id()
    }

    /// The `jti` of the token that made the call.
    pub fn token_id(&self) -> &str {
        self.permit.token_id()
    }

    /// The permit, for the holder of the approval `approval_id`: whoever calls this has
    /// confirmed with the approval's keeper (the issuer) that the approval names this grant,
    /// tool and digest and was spent for this call.
    pub fn approved(self, approval_id: String) -> Permit {
        Permit {
            approval: Some(approval_id),
            ..self.permit
        }
    }
}

/// Which rule refused a call, with the values involved.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DenyReason {
    /// The token carries no tool constraints at all (it is not a delegation token).
    NoAuthority,
    /// No allow pattern matches the tool.
    ToolNotGranted {
        /// The tool that was called.
        tool: String,
    },
    /// No resource pattern matches the resource.
    ResourceNotGranted {
        /// The resource, `upstream/uri`.
        resource: String,
    },
    /// No prompt pattern matches the prompt.
    PromptNotGranted {
        /// The prompt, `upstream/prompt`.
        prompt: String,
    },
    /// `deny_destructive` holds and the tool may be destructive, or its hints are not trusted.
    ToolDestructive {
        /// The tool that was called.
        tool: String,
        /// Whether its hints came from a pinned definition (else it is refused as unknown).
        trusted: bool,
    },
    /// A deny pattern matches the tool.
    ToolDenied {
        /// The tool that was called.
        tool: String,
        /// The deny pattern that matched.
        pattern: String,
    },
    /// The call falls outside every allowed time window.
    OutsideWindow {
        /// When the call was made (Unix seconds).
        at: i64,
    },
    /// The `arguments` value is not a JSON object.
    ArgumentsNotObject,
    /// A limited argument is absent.
    ArgumentMissing {
        /// Its JSON Pointer.
        pointer: String,
    },
    /// A number limit applies but the argument is not a number, or a prefix limit applies but
    /// it is not a string.
    ArgumentWrongType {
        /// Its JSON Pointer.
        pointer: String,
        /// `"number"` or `"string"`.
        expected: &'static str,
    },
    /// A number is above its `max`.
    AboveMax {
        /// Its JSON Pointer.
        pointer: String,
        /// The limit.
        max: f64,
        /// The value given.
        got: f64,
    },
    /// A number is below its `min`.
    BelowMin {
        /// Its JSON Pointer.
        pointer: String,
        /// The limit.
        min: f64,
        /// The value given.
        got: f64,
    },
    /// A value is not in its `in` set.
    NotInSet {
        /// Its JSON Pointer.
        pointer: String,
        /// The allowed values.
        allowed: Vec<Value>,
        /// The value given.
        got: Value,
    },
    /// A value differs from its `eq`.
    NotEqual {
        /// Its JSON Pointer.
        pointer: String,
        /// The required value.
        expected: Value,
        /// The value given.
        got: Value,
    },
    /// The token's calls-per-hour cap is reached (counted by whoever holds call counts: the
    /// gateway, per replica; this crate never produces it itself).
    RateExceeded {
        /// The cap.
        per_hour: u32,
    },
    /// A string does not start with its `prefix`.
    PrefixMismatch {
        /// Its JSON Pointer.
        pointer: String,
        /// The required prefix.
        prefix: String,
        /// The value given.
        got: String,
    },
}

impl DenyReason {
    /// A stable, machine-readable code for this kind of denial.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::NoAuthority => "no_authority",
            DenyReason::ToolNotGranted { .. } => "tool_not_granted",
            DenyReason::ToolDenied { .. } => "tool_denied",
            DenyReason::ToolDestructive { .. } => "tool_destructive",
            DenyReason::ResourceNotGranted { .. } => "resource_not_granted",
            DenyReason::PromptNotGranted { .. } => "prompt_not_granted",
            DenyReason::OutsideWindow { .. } => "outside_window",
            DenyReason::ArgumentsNotObject => "arguments_not_object",
            DenyReason::ArgumentMissing { .. } => "argument_missing",
            DenyReason::ArgumentWrongType { .. } => "argument_wrong_type",
            DenyReason::AboveMax { .. } => "limit_max",
            DenyReason::BelowMin { .. } => "limit_min",
            DenyReason::NotInSet { .. } => "limit_in",
            DenyReason::NotEqual { .. } => "limit_eq",
            DenyReason::PrefixMismatch { .. } => "limit_prefix",
            DenyReason::RateExceeded { .. } => "rate_limited",
        }
    }

    /// The JSON Pointer of the argument this denial is about, if any.
    pub fn pointer(&self) -> Option<&str> {
        match self {
            DenyReason::ArgumentMissing { pointer }
            | DenyReason::ArgumentWrongType { pointer, .. }
            | DenyReason::AboveMax { pointer, .. }
            | DenyReason::BelowMin { pointer, .. }
            | DenyReason::NotInSet { pointer, .. }
            | DenyReason::NotEqual { pointer, .. }
            | DenyReason::PrefixMismatch { pointer, .. } => Some(pointer),
            DenyReason::NoAuthority
            | DenyReason::ToolNotGranted { .. }
            | DenyReason::ToolDenied { .. }
            | DenyReason::ToolDestructive { .. }
            | DenyReason::ResourceNotGranted { .. }
            | DenyReason::PromptNotGranted { .. }
            | DenyReason::OutsideWindow { .. }
            | DenyReason::RateExceeded { .. }
            | DenyReason::ArgumentsNotObject => None,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoAuthority => f.write_str("the token grants no tools"),
            DenyReason::ToolNotGranted { tool } => write!(f, "tool {tool} is not granted"),
            DenyReason::ResourceNotGranted { resource } => {
                write!(f, "resource {resource} is not granted")
            }
            DenyReason::PromptNotGranted { prompt } => write!(f, "prompt {prompt} is not granted"),
            DenyReason::ToolDenied { tool, pattern } => {
                write!(f, "tool {tool} is denied by {pattern}")
            }
            DenyReason::ToolDestructive {
                tool,
                trusted: true,
            } => {
                write!(
                    f,
                    "tool {tool} may be destructive, and destructive tools are denied"
                )
            }
            DenyReason::ToolDestructive {
                tool,
                trusted: false,
            } => write!(
                f,
                "tool {tool} has no pinned definition to show it is not destructive, and \
                 destructive tools are denied"
            ),
            DenyReason::OutsideWindow { .. } => f.write_str("outside the allowed time windows"),
            DenyReason::ArgumentsNotObject => f.write_str("arguments must be a JSON object"),
            DenyReason::ArgumentMissing { pointer } => write!(f, "argument {pointer} is required"),
            DenyReason::ArgumentWrongType { pointer, expected } => {
                write!(f, "argument {pointer} must be a {expected}")
            }
            DenyReason::AboveMax { pointer, max, got } => {
                write!(f, "{pointer} {got} exceeds max {max}")
            }
            DenyReason::BelowMin { pointer, min, got } => {
                write!(f, "{pointer} {got} is below min {min}")
            }
            DenyReason::NotInSet {
                pointer,
                allowed,
                got,
            } => {
                let allowed: Vec<String> = allowed.iter().map(Value::to_string).collect();
                write!(f, "{pointer} {got} is not one of [{}]", allowed.join(", "))
            }
            DenyReason::NotEqual {
                pointer,
                expected,
                got,
            } => write!(f, "{pointer} {got} must equal {expected}"),
            DenyReason::PrefixMismatch {
                pointer,
                prefix,
                got,
            } => write!(f, "{pointer} {got:?} does not start with {prefix:?}"),
            DenyReason::RateExceeded { per_hour } => {
                write!(
                    f,
                    "the grant's limit of {per_hour} calls per hour is reached"
                )
            }
        }
    }
}

/// Judges a tool call against a verified token's constraints.
pub fn authorize(token: &VerifiedToken, action: &Action<'_>) -> Decision {
    let claims = token.claims();
    let Some(constraints) = &claims.constraints else {
        return Decision::Deny(DenyReason::NoAuthority);
    };
    if let Err(reason) = constraints.evaluate(action) {
        return Decision::Deny(reason);
    }
    let permit = Permit {
        grant_id: claims.grant_id.clone(),
        token_id: claims.token_id.clone(),
        rate: constraints.rate,
        approval: None,
    };
    match Requirement::of(&constraints.approval, action.tool, action.arguments) {
        None => Decision::Permit(permit),
        Some(requirement) => Decision::NeedsApproval(ApprovalNeeded {
            permit,
            tool: action.tool.to_owned(),
            digest: arguments_digest(action.arguments),
            requirement,
        }),
    }
}

/// A request for something other than a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// `resources/read` of `upstream/uri`.
    Resource(&'a str),
    /// `prompts/get` of `upstream/prompt`.
    Prompt(&'a str),
}

/// Judges a resource read or prompt use: the grant must name it, and windows apply.
pub fn authorize_access(token: &VerifiedToken, access: Access<'_>, at: i64) -> Decision {
    let claims = token.claims();
    let Some(constraints) = &claims.constraints else {
        return Decision::Deny(DenyReason::NoAuthority);
    };
    match constraints.evaluate_access(access, at) {
        Ok(()) => Decision::Permit(Permit {
            grant_id: claims.grant_id.clone(),
            token_id: claims.token_id.clone(),
            rate: constraints.rate,
            approval: None,
        }),
        Err(reason) => Decision::Deny(reason),
    }
}

impl Constraints {
    /// Whether a tool (full `upstream/tool` name) is visible under these constraints: allowed by
    /// some pattern and denied by none, its trusted `hints` (a pinned definition's, or `None`)
    /// considered. Argument limits and windows are checked per call.
    pub fn allows_tool(&self, tool: &str, hints: Option<ToolHints>) -> bool {
        self.tool_rule(tool, hints).is_ok()
    }

    /// The rule that refuses `tool` with these `hints`, if one does ([`Constraints::allows_tool`]).
    pub(crate) fn tool_rule(&self, tool: &str, hints: Option<ToolHints>) -> Result<(), DenyReason> {
        if let Some(pattern) = self.deny.iter().find(|p| p.matches(tool)) {
            return Err(DenyReason::ToolDenied {
                tool: tool.to_owned(),
                pattern: pattern.to_string(),
            });
        }
        if self.deny_destructive && hints.is_none_or(|h| h.destructive) {
            return Err(DenyReason::ToolDestructive {
                tool: tool.to_owned(),
                trusted: hints.is_some(),
            });
        }
        let read_only = hints.is_some_and(|h| h.read_only);
        let allowed = self.tools.iter().any(|p| p.matches(tool))
            || (read_only && self.read_only.iter().any(|p| p.matches(tool)));
        if allowed {
            Ok(())
        } else {
            Err(DenyReason::ToolNotGranted {
                tool: tool.to_owned(),
            })
        }
    }

    /// Checks a resource read or prompt use against these constraints alone.
    pub fn evaluate_access(&self, access: Access<'_>, at: i64) -> Result<(), DenyReason> {
        match access {
            Access::Resource(resource) if !self.allows_resource(resource) => {
                return Err(DenyReason::ResourceNotGranted {
                    resource: resource.to_owned(),
                });
            }
            Access::Prompt(prompt) if !self.allows_prompt(prompt) => {
                return Err(DenyReason::PromptNotGranted {
                    prompt: prompt.to_owned(),
                });
            }
            _ => {}
        }
        if !self.windows.is_empty() && !self.windows.iter().any(|w| w.contains(at)) {
            return Err(DenyReason::OutsideWindow { at });
        }
        Ok(())
    }

    /// Checks a call against these constraints alone, without a token: the rule
    /// [`authorize`] applies, exposed for resource servers and for tests of the laws.
    pub fn evaluate(&self, action: &Action<'_>) -> Result<(), DenyReason> {
        self.tool_rule(action.tool, action.hints)?;
        if !self.windows.is_empty() && !self.windows.iter().any(|w| w.contains(action.at)) {
            return Err(DenyReason::OutsideWindow { at: action.at });
        }
        let mut applicable = self.limits.iter().filter(|l| l.tool.matches(action.tool));
        let Some(first) = applicable.next() else {
            return Ok(());
        };
        let empty;
        let arguments = match action.arguments {
            Value::Object(_) => action.arguments,
            Value::Null => {
                empty = Value::Object(serde_json::Map::new());
                &empty
            }
            _ => return Err(DenyReason::ArgumentsNotObject),
        };
        std::iter::once(first)
            .chain(applicable)
            .try_for_each(|l| check_limit(l, arguments))
    }
}

pub(crate) fn check_limit(limit: &Limit, arguments: &Value) -> Result<(), DenyReason> {
    let pointer = || limit.pointer.clone();
    let value = arguments
        .pointer(&limit.pointer)
        .ok_or_else(|| DenyReason::ArgumentMissing { pointer: pointer() })?;
    if limit.max.is_some() || limit.min.is_some() {
        let got = value
            .as_f64()
            .ok_or_else(|| DenyReason::ArgumentWrongType {
                pointer: pointer(),
                expected: "number",
            })?;
        if let Some(max) = limit.max.filter(|max| got > *max) {
            return Err(DenyReason::AboveMax {
                pointer: pointer(),
                max,
                got,
            });
        }
        if let Some(min) = limit.min.filter(|min| got < *min) {
            return Err(DenyReason::BelowMin {
                pointer: pointer(),
                min,
                got,
            });
        }
    }
    if let Some(allowed) = &limit.one_of
        && !allowed.iter().any(|a| json_equal(a, value))
    {
        return Err(DenyReason::NotInSet {
            pointer: pointer(),
            allowed: allowed.clone(),
            got: value.clone(),
        });
    }
    if let Some(expected) = &limit.eq
        && !json_equal(expected, value)
    {
        return Err(DenyReason::NotEqual {
            pointer: pointer(),
            expected: expected.clone(),
            got: value.clone(),
        });
    }
    if let Some(prefix) = &limit.prefix {
        let got = value
            .as_str()
            .ok_or_else(|| DenyReason::ArgumentWrongType {
                pointer: pointer(),
                expected: "string",
            })?;
        if !got.starts_with(prefix.as_str()) {
            return Err(DenyReason::PrefixMismatch {
                pointer: pointer(),
                prefix: prefix.clone(),
                got: got.to_owned(),
            });
        }
    }
    Ok(())
}

impl ApprovalTerm {
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

/// JSON equality where `500` and `500.0` are the same number, as they are to a JSON reader.
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn constraints(detail: Value) -> Constraints {
        Constraints::from_authorization_details(&[detail]).unwrap()
    }

    fn expense_grant() -> Constraints {
        constraints(json!({
            "type": "mcp_tools",
            "tools": ["expenses/submit_expense", "expenses/list_*"],
            "deny": ["expenses/list_secret*"],
            "limits": [
                {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500, "min": 0},
                {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]}
            ]
        }))
    }

    fn call(tool: &str, arguments: Value) -> Result<(), DenyReason> {
        expense_grant().evaluate(&Action {
            tool,
            arguments: &arguments,
            at: 0,
            hints: None,
        })
    }

    #[test]
    fn call_within_every_limit_is_allowed() {
        assert_eq!(
            call(
                "expenses/submit_expense",
                json!({"amount": 120, "category": "travel"})
            ),
            Ok(())
        );
    }

    #[test]
    fn amount_over_max_is_denied_naming_pointer_limit_and_value() {
        let reason = call(
            "expenses/submit_expense",
            json!({"amount": 620, "category": "travel"}),
        )
        .unwrap_err();
        assert_eq!(
            reason,
            DenyReason::AboveMax {
                pointer: "/amount".into(),
                max: 500.0,
                got: 620.0
            }
        );
        assert_eq!(reason.to_string(), "/amount 620 exceeds max 500");
    }

    #[test]
    fn category_outside_set_is_denied() {
        let reason = call(
            "expenses/submit_expense",
            json!({"amount": 5, "category": "jewelry"}),
        )
        .unwrap_err();
        assert_eq!(reason.code(), "limit_in");
    }

    #[test]
    fn missing_limited_argument_is_denied_not_skipped() {
        let reason = call("expenses/submit_expense", json!({"category": "meal"})).unwrap_err();
        assert_eq!(
            reason,
            DenyReason::ArgumentMissing {
                pointer: "/amount".into()
            }
        );
    }

    #[test]
    fn amount_given_as_a_string_is_denied() {
        let reason = call(
            "expenses/submit_expense",
            json!({"amount": "10", "category": "meal"}),
        )
        .unwrap_err();
        assert_eq!(reason.code(), "argument_wrong_type");
    }

    #[test]
    fn tool_outside_the_grant_is_denied() {
        let reason = call("expenses/delete_all_expenses", json!({})).unwrap_err();
        assert_eq!(
            reason,
            DenyReason::ToolNotGranted {
                tool: "expenses/delete_all_expenses".into()
            }
        );
    }

    #[test]
    fn deny_pattern_wins_over_allow_pattern() {
        let reason = call("expenses/list_secrets", json!({})).unwrap_err();
        assert_eq!(reason.code(), "tool_denied");
    }

    #[test]
    fn non_object_arguments_are_denied_when_a_limit_applies() {
        let reason = call("expenses/submit_expense", json!([500])).unwrap_err();
        assert_eq!(reason, DenyReason::ArgumentsNotObject);
    }

    #[test]
    fn call_outside_window_is_denied() {
        let c = constraints(json!({
            "type": "mcp_tools", "tools": ["a/*"],
            "windows": [{"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "UTC"}]
        }));
        let args = json!({});
        // Monday 2026-11-23 15:00 UTC, then 20:00 UTC.
        assert_eq!(
            c.evaluate(&Action {
                tool: "a/b",
                arguments: &args,
                at: 1_795_446_000,
                hints: None
            }),
            Ok(())
        );
        let late = c.evaluate(&Action {
            tool: "a/b",
            arguments: &args,
            at: 1_795_464_000,
            hints: None,
        });
        assert_eq!(late.unwrap_err().code(), "outside_window");
    }

    #[test]
    fn prefix_and_eq_limits_are_enforced() {
        let c = constraints(json!({
            "type": "mcp_tools", "tools": ["k8s/*"],
            "limits": [
                {"tool": "k8s/*", "pointer": "/namespace", "prefix": "team-a-"},
                {"tool": "k8s/*", "pointer": "/dry_run", "eq": true}
            ]
        }));
        let eval = |args: Value| {
            c.evaluate(&Action {
                tool: "k8s/apply",
                arguments: &args,
                at: 0,
                hints: None,
            })
        };
        assert_eq!(
            eval(json!({"namespace": "team-a-web", "dry_run": true})),
            Ok(())
        );
        assert_eq!(
            eval(json!({"namespace": "team-b-web", "dry_run": true}))
                .unwrap_err()
                .code(),
            "limit_prefix"
        );
        assert_eq!(
            eval(json!({"namespace": "team-a-web", "dry_run": false}))
                .unwrap_err()
                .code(),
            "limit_eq"
        );
    }

    #[test]
    fn integer_and_float_spellings_of_a_number_are_equal() {
        assert!(json_equal(&json!(500), &json!(500.0)));
        assert!(!json_equal(&json!(500), &json!("500")));
    }
}

#[cfg(test)]
mod access_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn resources_and_prompts_a_grant_does_not_name_are_denied() {
        let c = Constraints::from_authorization_details(&[json!({
            "type": "mcp_tools", "tools": ["expenses/*"],
            "resources": ["expenses/expenses://reports/*"],
            "prompts": ["expenses/monthly_summary"]
        })])
        .unwrap();
        let eval = |access| c.evaluate_access(access, 0);
        assert_eq!(
            eval(Access::Resource("expenses/expenses://reports/2026-11")),
            Ok(())
        );
        assert_eq!(
            eval(Access::Resource("expenses/file:///etc/passwd"))
                .unwrap_err()
                .code(),
            "resource_not_granted"
        );
        assert_eq!(eval(Access::Prompt("expenses/monthly_summary")), Ok(()));
        assert_eq!(
            eval(Access::Prompt("expenses/exfiltrate"))
                .unwrap_err()
                .code(),
            "prompt_not_granted"
        );
        let none = Constraints::from_authorization_details(&[
            json!({"type": "mcp_tools", "tools": ["a/b"]}),
        ])
        .unwrap();
        assert!(
            none.evaluate_access(Access::Resource("a/x://y"), 0)
                .is_err()
        );
    }

    fn grant(detail: Value) -> Constraints {
        Constraints::from_authorization_details(&[detail]).unwrap()
    }

    fn with_hints(c: &Constraints, tool: &str, hints: Option<ToolHints>) -> Result<(), DenyReason> {
        c.evaluate(&Action {
            tool,
            arguments: &json!({}),
            at: 0,
            hints,
        })
    }

    const READ_ONLY: ToolHints = ToolHints {
        read_only: true,
        destructive: false,
    };
    const DESTRUCTIVE: ToolHints = ToolHints {
        read_only: false,
        destructive: true,
    };

    #[test]
    fn hints_follow_the_mcp_defaults() {
        assert_eq!(
            ToolHints::from_annotations(&json!({"readOnlyHint": true})),
            READ_ONLY
        );
        assert_eq!(ToolHints::from_annotations(&json!({})), DESTRUCTIVE);
        assert_eq!(ToolHints::from_annotations(&Value::Null), DESTRUCTIVE);
        let additive = ToolHints::from_annotations(&json!({"destructiveHint": false}));
        assert_eq!((additive.read_only, additive.destructive), (false, false));
        // A tool that says both is read-only, and so not destructive.
        let both = json!({"readOnlyHint": true, "destructiveHint": true});
        assert_eq!(ToolHints::from_annotations(&both), READ_ONLY);
    }

    #[test]
    fn read_only_patterns_allow_only_tools_a_pinned_definition_calls_read_only() {
        let c = grant(json!({"type": "mcp_tools", "read_only": ["k8s/*"]}));
        assert_eq!(with_hints(&c, "k8s/get_pods", Some(READ_ONLY)), Ok(()));
        assert!(c.allows_tool("k8s/get_pods", Some(READ_ONLY)));
        for hints in [None, Some(DESTRUCTIVE)] {
            assert_eq!(
                with_hints(&c, "k8s/get_pods", hints).unwrap_err().code(),
                "tool_not_granted",
                "{hints:?}"
            );
        }
        assert_eq!(
            with_hints(&c, "payroll/get_pay", Some(READ_ONLY))
                .unwrap_err()
                .code(),
            "tool_not_granted"
        );
    }

    #[test]
    fn deny_destructive_refuses_what_may_destroy_and_what_is_not_pinned() {
        let c = grant(json!({"type": "mcp_tools", "tools": ["k8s/*"],
                                   "deny_destructive": true}));
        assert_eq!(with_hints(&c, "k8s/get_pods", Some(READ_ONLY)), Ok(()));
        let additive = ToolHints {
            read_only: false,
            destructive: false,
        };
        assert_eq!(with_hints(&c, "k8s/create_pod", Some(additive)), Ok(()));
        assert_eq!(
            with_hints(&c, "k8s/delete_pod", Some(DESTRUCTIVE)),
            Err(DenyReason::ToolDestructive {
                tool: "k8s/delete_pod".into(),
                trusted: true
            })
        );
        assert_eq!(
            with_hints(&c, "k8s/get_pods", None),
            Err(DenyReason::ToolDestructive {
                tool: "k8s/get_pods".into(),
                trusted: false
            }),
            "unpinned: its hints are the server's word alone"
        );
        assert!(
            c.describe()
                .contains(&"never a tool that may be destructive".to_owned())
        );
    }
}
