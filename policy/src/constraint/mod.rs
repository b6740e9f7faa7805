//! The authority a delegation token carries: which tools, with which arguments, when.
//!
//! On the wire the constraints are one RFC 9396 `authorization_details` entry of type
//! `mcp_tools`, so a standard OAuth client can request them and a resource server can enforce
//! them from the token alone:
//!
//! ```json
//! [{"type": "mcp_tools",
//!   "tools": ["expenses/submit_expense", "expenses/list_*"],
//!   "deny": ["expenses/delete_*"],
//!   "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500},
//!              {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]}],
//!   "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "19:00",
//!                "tz": "Europe/Berlin"}],
//!   "rate": {"per_hour": 100},
//!   "max_depth": 1}]
//! ```
//!
//! [`RawAuthorizationDetail`] is that wire shape; [`Constraints`] is the validated form and the
//! only one the rest of the crate reads. Validation fails closed: an unknown `type`, a second
//! `mcp_tools` entry, an unknown field, a wildcard anywhere but at the end of a pattern, an
//! unknown time zone or an empty set is an error, never an unrestricted grant.
//!
//! Long because the wire shape, its validation (fail closed, with a reason per field) and the
//! validated model are one contract; the approval terms live apart in `approval.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod approval;

pub use self::approval::{ApprovalTerm, DEFAULT_VALID_FOR, MAX_VALID_FOR};

/// The `type` of the RFC 9396 authorization detail this crate understands.
pub const MCP_TOOLS_TYPE: &str = "mcp_tools";

const MAX_PATTERN_LEN: usize = 256;
const MAX_ENTRIES: usize = 256;

/// Why an `authorization_details` value is not a valid set of constraints.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConstraintError {
    /// The value is not a one-element array holding an object of type `mcp_tools`.
    #[error("authorization_details must hold exactly one entry of type \"mcp_tools\"")]
    NotOneMcpToolsEntry,
    /// The entry has a `type` this crate does not enforce.
    #[error("unsupported authorization_details type {0:?}")]
    UnsupportedType(String),
    /// The entry could not be read (unknown field, wrong type, ...).
    #[error("malformed mcp_tools entry: {0}")]
    Malformed(String),
    /// A tool pattern is empty, too long, has a `*` other than at its end, or a bad character.
    #[error("invalid tool pattern {0:?}: use upstream/tool, with at most one trailing '*'")]
    InvalidPattern(String),
    /// A limit names no rule, an impossible range, an empty set, or a bad JSON Pointer.
    #[error("invalid limit on {pointer:?}: {reason}")]
    InvalidLimit {
        /// The JSON Pointer of the limited argument.
        pointer: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A window has a bad day, time or time zone, or ends before it starts.
    #[error("invalid window: {0}")]
    InvalidWindow(String),
    /// An approval term has a bad condition, validity or list of second approvers.
    #[error("invalid approval term: {0}")]
    InvalidApproval(String),
    /// More entries than this crate is willing to evaluate per call.
    #[error("too many {0} (at most {MAX_ENTRIES})")]
    TooMany(&'static str),
}

/// A tool pattern: `upstream/tool` exactly, or a prefix followed by one trailing `*`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ToolPattern {
    text: String,
}

impl ToolPattern {
    /// Parses a pattern, refusing anything but `[A-Za-z0-9_./-]` and one trailing `*`.
    pub fn new(text: &str) -> Result<Self, ConstraintError> {
        let body = text.strip_suffix('*').unwrap_or(text);
        let valid = !text.is_empty()
            && text.len() <= MAX_PATTERN_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
        if valid {
            Ok(Self {
                text: text.to_owned(),
            })
        } else {
            Err(ConstraintError::InvalidPattern(text.to_owned()))
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn prefix(&self) -> Option<&str> {
        self.text.strip_suffix('*')
    }

    /// Whether `tool` (a full `upstream/tool` name) is matched by this pattern.
    pub fn matches(&self, tool: &str) -> bool {
        match self.prefix() {
            Some(prefix) => tool.starts_with(prefix),
            None => tool == self.text,
        }
    }

    /// Whether every tool matched by `other` is also matched by `self`.
    pub fn covers(&self, other: &ToolPattern) -> bool {
        match (self.prefix(), other.prefix()) {
            (Some(mine), Some(theirs)) => theirs.starts_with(mine),
            (Some(mine), None) => other.text.starts_with(mine),
            (None, Some(_)) => false,
            (None, None) => self.text == other.text,
        }
    }
}

impl TryFrom<String> for ToolPattern {
    type Error = ConstraintError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(&text)
    }
}

impl From<ToolPattern> for String {
    fn from(pattern: ToolPattern) -> Self {
        pattern.text
    }
}

impl fmt::Debug for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

impl fmt::Display for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A resource pattern: `upstream/` and a resource URI, exactly or with one trailing `*`
/// (`expenses/expenses://reports/*`). Resources and prompts a grant does not name are denied.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourcePattern(ToolPattern);

impl ResourcePattern {
    /// Parses a pattern: an upstream name, `/`, a URI without spaces or control characters,
    /// and at most one `*`, at the end.
    pub fn new(text: &str) -> Result<Self, ConstraintError> {
        let body = text.strip_suffix('*').unwrap_or(text);
        let valid = text.len() <= 4 * MAX_PATTERN_LEN
            && body.split_once('/').is_some_and(|(up, uri)| {
                !up.is_empty() && (!uri.is_empty() || text.ends_with('*'))
            })
            && !body.contains('*')
            && !body.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Self(ToolPattern {
                text: text.to_owned(),
            }))
        } else {
            Err(ConstraintError::InvalidPattern(text.to_owned()))
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether `resource` (`upstream/uri`) is matched.
    pub fn matches(&self, resource: &str) -> bool {
        self.0.matches(resource)
    }

    /// Whether every resource `other` matches is matched by `self`.
    pub fn covers(&self, other: &ResourcePattern) -> bool {
        self.0.covers(&other.0)
    }
}

impl TryFrom<String> for ResourcePattern {
    type Error = ConstraintError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::new(&text)
    }
}

impl From<ResourcePattern> for String {
    fn from(pattern: ResourcePattern) -> Self {
        pattern.0.text
    }
}

impl fmt::Debug for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule on one argument of the tools a pattern matches. Every rule present must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The tools this limit applies to.
    pub tool: ToolPattern,
    /// RFC 6901 JSON Pointer into the call's `arguments`, e.g. `/amount`.
    pub pointer: String,
    /// The argument is a number no greater than this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_or_float"
    )]
    pub max: Option<f64>,
    /// The argument is a number no smaller than this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "whole_or_float"
    )]
    pub min: Option<f64>,
    /// The argument equals one of these values.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// The argument equals this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eq: Option<Value>,
    /// The argument is a string that starts with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Writes `500.0` as `500`, so limits read back as they were written.
fn whole_or_float<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match *value {
        Some(v) if v.fract() == 0.0 && v.abs() < EXACT => s.serialize_i64(v as i64),
        Some(v) => s.serialize_f64(v),
        None => s.serialize_none(),
    }
}

impl Limit {
    pub(crate) fn validate(&self) -> Result<(), ConstraintError> {
        let invalid = |reason| ConstraintError::InvalidLimit {
            pointer: self.pointer.clone(),
            reason,
        };
        if !(self.pointer.is_empty() || self.pointer.starts_with('/')) {
            return Err(invalid("a JSON Pointer is empty or starts with '/'"));
        }
        if self.max.is_none()
            && self.min.is_none()
            && self.one_of.is_none()
            && self.eq.is_none()
            && self.prefix.is_none()
        {
            return Err(invalid("names no rule (max, min, in, eq, prefix)"));
        }
        if self.max.is_some_and(|m| !m.is_finite()) || self.min.is_some_and(|m| !m.is_finite()) {
            return Err(invalid("max and min must be finite numbers"));
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(invalid("min is greater than max"));
        }
        if self.one_of.as_ref().is_some_and(Vec::is_empty) {
            return Err(invalid("an empty 'in' set allows nothing"));
        }
        Ok(())
    }

    /// Whether this limit is about the same argument of the same tools as `other`.
    pub(crate) fn same_target(&self, other: &Limit) -> bool {
        self.tool == other.tool && self.pointer == other.pointer
    }
}

/// A weekly time window in a time zone: some days of the week, from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawWindow", into = "RawWindow")]
pub struct Window {
    /// Bit `n` set = day `n` allowed, Monday = 0.
    pub(crate) days: u8,
    /// Minutes since local midnight, inclusive.
    pub(crate) start: u16,
    /// Minutes since local midnight, exclusive; at most 24 * 60.
    pub(crate) end: u16,
    pub(crate) tz_name: String,
    pub(crate) tz: jiff::tz::TimeZone,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

impl Window {
    /// Whether the instant `at` (seconds since the Unix epoch) falls inside this window.
    pub fn contains(&self, at: i64) -> bool {
        let Ok(ts) = jiff::Timestamp::from_second(at) else {
            return false;
        };
        let local = ts.to_zoned(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset();
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.days & (1 << day) != 0 && self.start <= minute && minute < self.end
    }

    /// How many minutes a week the window allows.
    pub fn minutes_per_week(&self) -> u32 {
        self.days.count_ones() * u32::from(self.end - self.start)
    }

    /// The window both `self` and `other` allow, when they share a time zone.
    ///
    /// Windows in different zones do not intersect into one weekly window (offsets move with
    /// daylight saving), so that case is `Err(())` and the caller refuses it.
    pub(crate) fn intersect(&self, other: &Window) -> Result<Option<Window>, ()> {
        if self.tz_name != other.tz_name {
            return Err(());
        }
        let days = self.days & other.days;
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        Ok((days != 0 && start < end).then(|| Window {
            days,
            start,
            end,
            tz_name: self.tz_name.clone(),
            tz: self.tz.clone(),
        }))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    days: Vec<String>,
    start: String,
    end: String,
    tz: String,
}

fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h * 60 + m;
    (m < 60 && minutes <= MINUTES_PER_DAY).then_some(minutes)
}

impl TryFrom<RawWindow> for Window {
    type Error = ConstraintError;

    fn try_from(raw: RawWindow) -> Result<Self, Self::Error> {
        let mut days = 0u8;
        for day in &raw.days {
            let index = DAY_NAMES
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day))
                .ok_or_else(|| ConstraintError::InvalidWindow(format!("unknown day {day:?}")))?;
            days |= 1 << index;
        }
        if days == 0 {
            return Err(ConstraintError::InvalidWindow("no days".into()));
        }
        let clock = |t: &str| {
            parse_clock(t)
                .ok_or_else(|| ConstraintError::InvalidWindow(format!("bad time {t:?}, use HH:MM")))
        };
        let (start, end) = (clock(&raw.start)?, clock(&raw.end)?);
        if start >= end {
            return Err(ConstraintError::InvalidWindow(format!(
                "start {} is not before end {} (split an overnight window in two)",
                raw.start, raw.end
            )));
        }
        let tz = jiff::tz::TimeZone::get(&raw.tz).map_err(|_| {
            ConstraintError::InvalidWindow(format!("unknown IANA time zone {:?}", raw.tz))
        })?;
        Ok(Window {
            days,
            start,
            end,
            tz_name: raw.tz,
            tz,
        })
    }
}

impl From<Window> for RawWindow {
    fn from(w: Window) -> Self {
        let clock = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        RawWindow {
            days: (0..7)
                .filter(|d| w.days & (1 << d) != 0)
                .map(|d| DAY_NAMES[d].to_owned())
                .collect(),
            start: clock(w.start),
            end: clock(w.end),
            tz: w.tz_name,
        }
    }
}

/// A cap on calls per rolling hour, enforced where shared state exists (issuer, gateway replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Calls allowed per rolling hour.
    pub per_hour: u32,
}

/// The wire form of one RFC 9396 authorization detail of type `mcp_tools`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorizationDetail {
    /// Always [`MCP_TOOLS_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Allowed tool patterns.
    #[serde(default)]
    pub tools: Vec<ToolPattern>,
    /// Denied tool patterns; a deny wins over any allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<ToolPattern>,
    /// Tools allowed when they are read-only: a tool matching one of these patterns whose
    /// pinned definition says `readOnlyHint: true` ([`ToolHints`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<ToolPattern>,
    /// Refuse every tool that may be destructive: one whose pinned definition does not say
    /// `readOnlyHint: true` and does not say `destructiveHint: false`, and every tool whose
    /// definition is not pinned (its hints cannot be trusted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny_destructive: bool,
    /// Resources that may be read (`resources/read`), as `upstream/uri` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourcePattern>,
    /// Prompts that may be used (`prompts/get`), as `upstream/prompt` patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<ToolPattern>,
    /// Argument limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
    /// When calls are allowed; empty = always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    /// Calls per rolling hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
    /// Calls a person must approve first ([`ApprovalTerm`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval: Vec<ApprovalTerm>,
    /// How many more re-delegations are allowed; absent = none.
    #[serde(default)]
    pub max_depth: u32,
}

/// Validated constraints: what a token allows. Build them from JSON with
/// [`Constraints::from_authorization_details`] or from parts with [`Constraints::new`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Value>", into = "Vec<Value>")]
pub struct Constraints {
    pub(crate) tools: Vec<ToolPattern>,
    pub(crate) deny: Vec<ToolPattern>,
    pub(crate) read_only: Vec<ToolPattern>,
    pub(crate) deny_destructive: bool,
    pub(crate) resources: Vec<ResourcePattern>,
    pub(crate) prompts: Vec<ToolPattern>,
    pub(crate) limits: Vec<Limit>,
    pub(crate) windows: Vec<Window>,
    pub(crate) rate: Option<Rate>,
    pub(crate) approval: Vec<ApprovalTerm>,
    pub(crate) max_depth: u32,
}

impl Constraints {
    /// Validates one `mcp_tools` entry.
    pub fn new(raw: RawAuthorizationDetail) -> Result<Self, ConstraintError> {
        if raw.kind != MCP_TOOLS_TYPE {
            return Err(ConstraintError::UnsupportedType(raw.kind));
        }
        for (what, len) in [
            ("tools", raw.tools.len()),
            ("deny patterns", raw.deny.len()),
            ("read-only patterns", raw.read_only.len()),
            ("resource patterns", raw.resources.len()),
            ("prompt patterns", raw.prompts.len()),
            ("limits", raw.limits.len()),
            ("windows", raw.windows.len()),
            ("approval terms", raw.approval.len()),
        ] {
            if len > MAX_ENTRIES {
                return Err(ConstraintError::TooMany(what));
            }
        }
        raw.limits.iter().try_for_each(Limit::validate)?;
        Ok(Self {
            tools: raw.tools,
            deny: raw.deny,
            read_only: raw.read_only,
            deny_destructive: raw.deny_destructive,
            resources: raw.resources,
            prompts: raw.prompts,
            limits: raw.limits,
            windows: raw.windows,
            rate: raw.rate,
            approval: raw.approval,
            max_depth: raw.max_depth,
        })
    }

    /// Validates an RFC 9396 `authorization_details` array holding exactly one `mcp_tools` entry.
    pub fn from_authorization_details(details: &[Value]) -> Result<Self, ConstraintError> {
        let [entry] = details else {
            return Err(ConstraintError::NotOneMcpToolsEntry);
        };
        let kind = entry.get("type").and_then(Value::as_str);
        if let Some(kind) = kind.filter(|k| *k != MCP_TOOLS_TYPE) {
            return Err(ConstraintError::UnsupportedType(kind.to_owned()));
        }
        let raw = RawAuthorizationDetail::deserialize(entry)
            .map_err(|e| ConstraintError::Malformed(e.to_string()))?;
        Self::new(raw)
    }

    /// The wire form, for signing into a token.
    pub fn to_raw(&self) -> RawAuthorizationDetail {
        RawAuthorizationDetail {
            kind: MCP_TOOLS_TYPE.to_owned(),
            tools: self.tools.clone(),
            deny: self.deny.clone(),
            read_only: self.read_only.clone(),
            deny_destructive: self.deny_destructive,
            resources: self.resources.clone(),
            prompts: self.prompts.clone(),
            limits: self.limits.clone(),
            windows: self.windows.clone(),
            rate: self.rate,
            approval: self.approval.clone(),
            max_depth: self.max_depth,
        }
    }

    /// Allowed tool patterns.
    pub fn tools(&self) -> &[ToolPattern] {
        &self.tools
    }

    /// Denied tool patterns.
    pub fn deny(&self) -> &[ToolPattern] {
        &self.deny
    }

    /// Patterns of tools allowed when their pinned definition says they are read-only.
    pub fn read_only(&self) -> &[ToolPattern] {
        &self.read_only
    }

    /// Whether every tool that may be destructive is refused.
    pub fn deny_destructive(&self) -> bool {
        self.deny_destructive
    }

    /// Whether judging a tool under these constraints reads its hints at all (so a caller
    /// can skip looking them up).
    pub fn uses_tool_hints(&self) -> bool {
        self.deny_destructive || !self.read_only.is_empty()
    }

    /// Resource patterns.
    pub fn resources(&self) -> &[ResourcePattern] {
        &self.resources
    }

    /// Prompt patterns.
    pub fn prompts(&self) -> &[ToolPattern] {
        &self.prompts
    }

    /// Argument limits.
    pub fn limits(&self) -> &[Limit] {
        &self.limits
    }

    /// Time windows; empty means always.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Calls per rolling hour, if capped.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Calls a person must approve first.
    pub fn approval(&self) -> &[ApprovalTerm] {
        &self.approval
    }

    /// How many more re-delegations are allowed.
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// Whether a resource (`upstream/uri`) is named by these constraints.
    pub fn allows_resource(&self, resource: &str) -> bool {
        self.resources.iter().any(|p| p.matches(resource))
    }

    /// Whether a prompt (`upstream/prompt`) is named by these constraints.
    pub fn allows_prompt(&self, prompt: &str) -> bool {
        self.prompts.iter().any(|p| p.matches(prompt))
    }
}

impl fmt::Display for Limit {
    /// In plain words: `/amount ≤ 500 and ≥ 1`, `/category one of "travel", "meal"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rules = Vec::new();
        if let Some(max) = self.max {
            rules.push(format!("≤ {max}"));
        }
        if let Some(min) = self.min {
            rules.push(format!("≥ {min}"));
        }
        if let Some(set) = &self.one_of {
            let set: Vec<String> = set.iter().map(Value::to_string).collect();
            rules.push(format!("one of {}", set.join(", ")));
        }
        if let Some(eq) = &self.eq {
            rules.push(format!("= {eq}"));
        }
        if let Some(prefix) = &self.prefix {
            rules.push(format!("starting with {prefix:?}"));
        }
        write!(f, "{} {}", self.pointer, rules.join(" and "))
    }
}

impl fmt::Display for Window {
    /// In plain words: `mon, tue 09:00–17:00 Europe/Berlin`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = RawWindow::from(self.clone());
        write!(
            f,
            "{} {}–{} {}",
            raw.days.join(", "),
            raw.start,
            raw.end,
            raw.tz
        )
    }
}

impl Constraints {
    /// The constraints in plain words, one line per rule, for operators reading a token.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for pattern in &self.tools {
            let limits: Vec<String> = self
                .limits
                .iter()
                .filter(|l| l.tool.covers(pattern) || pattern.covers(&l.tool))
                .map(|l| l.to_string())
                .collect();
            if limits.is_empty() {
                lines.push(format!("may call {pattern}"));
            } else {
                lines.push(format!("may call {pattern} with {}", limits.join("; ")));
            }
        }
        if self.tools.is_empty() {
            lines.push("may call no tool".to_owned());
        }
        for pattern in &self.read_only {
            lines.push(format!("may call the read-only tools of {pattern}"));
        }
        for pattern in &self.deny {
            lines.push(format!("never {pattern}"));
        }
        if self.deny_destructive {
            lines.push("never a tool that may be destructive".to_owned());
        }
        for pattern in &self.resources {
            lines.push(format!("may read {pattern}"));
        }
        for pattern in &self.prompts {
            lines.push(format!("may use prompt {pattern}"));
        }
        if !self.windows.is_empty() {
            let windows: Vec<String> = self.windows.iter().map(Window::to_string).collect();
            lines.push(format!("only during {}", windows.join(" or ")));
        }
        if let Some(rate) = self.rate {
            lines.push(format!("at most {} calls per hour", rate.per_hour));
        }
        lines.extend(self.approval.iter().map(ApprovalTerm::describe));
        lines.push(match self.max_depth {
            0 => "may not delegate further".to_owned(),
            1 => "may delegate once more".to_owned(),
            n => format!("may delegate {n} more times"),
        });
        lines
    }
}

impl TryFrom<Vec<Value>> for Constraints {
    type Error = ConstraintError;

    fn try_from(details: Vec<Value>) -> Result<Self, Self::Error> {
        Self::from_authorization_details(&details)
    }
}

impl From<Constraints> for Vec<Value> {
    fn from(c: Constraints) -> Self {
        // Serialising plain data structures into a Value cannot fail.
        vec![serde_json::to_value(c.to_raw()).unwrap_or(Value::Null)]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pattern(p: &str) -> ToolPattern {
        ToolPattern::new(p).unwrap()
    }

    #[test]
    fn wildcard_pattern_matches_by_prefix_only() {
        let p = pattern("expenses/list_*");
        assert!(p.matches("expenses/list_expenses"));
        assert!(!p.matches("expenses/delete_all"));
        assert!(!pattern("expenses/list").matches("expenses/list_expenses"));
    }

    #[test]
    fn wildcard_anywhere_but_the_end_is_refused() {
        for bad in ["", "exp*nses/x", "**", "a/b c", "a/ü", "a/*b"] {
            assert!(ToolPattern::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_wider_pattern_covers_a_narrower_one_but_not_the_reverse() {
        assert!(pattern("expenses/*").covers(&pattern("expenses/list_*")));
        assert!(pattern("expenses/*").covers(&pattern("expenses/submit")));
        assert!(!pattern("expenses/list_*").covers(&pattern("expenses/*")));
        assert!(!pattern("expenses/submit").covers(&pattern("expenses/submit*")));
    }

    #[test]
    fn authorization_details_round_trip_through_json() {
        let wire = json!([{
            "type": "mcp_tools",
            "tools": ["expenses/*"],
            "deny": ["expenses/delete_*"],
            "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500, "min": 0.5}],
            "windows": [{"days": ["mon", "fri"], "start": "09:00", "end": "17:30", "tz": "Europe/Berlin"}],
            "rate": {"per_hour": 10},
            "max_depth": 2
        }]);
        let constraints: Constraints = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&constraints).unwrap(), wire);
    }

    #[test]
    fn unknown_detail_type_is_refused() {
        let err = Constraints::from_authorization_details(&[json!({"type": "payment_initiation"})])
            .unwrap_err();
        assert_eq!(
            err,
            ConstraintError::UnsupportedType("payment_initiation".into())
        );
    }

    #[test]
    fn two_entries_are_refused() {
        let entry = json!({"type": "mcp_tools", "tools": ["a/b"]});
        let err = Constraints::from_authorization_details(&[entry.clone(), entry]).unwrap_err();
        assert_eq!(err, ConstraintError::NotOneMcpToolsEntry);
    }

    #[test]
    fn unknown_field_is_refused_rather_than_ignored() {
        let err = Constraints::from_authorization_details(&[
            json!({"type": "mcp_tools", "tools": ["a/b"], "tool_limits": []}),
        ])
        .unwrap_err();
        assert!(matches!(err, ConstraintError::Malformed(_)));
    }

    #[test]
    fn limit_without_rule_or_with_impossible_range_is_refused() {
        for limit in [
            json!({"tool": "a/b", "pointer": "/x"}),
            json!({"tool": "a/b", "pointer": "/x", "min": 5, "max": 1}),
            json!({"tool": "a/b", "pointer": "x", "max": 1}),
            json!({"tool": "a/b", "pointer": "/x", "in": []}),
        ] {
            let details = [json!({"type": "mcp_tools", "tools": ["a/b"], "limits": [limit]})];
            assert!(matches!(
                Constraints::from_authorization_details(&details),
                Err(ConstraintError::InvalidLimit { .. })
            ));
        }
    }

    #[test]
    fn window_with_unknown_zone_or_reversed_times_is_refused() {
        for window in [
            json!({"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "Mars/Olympus"}),
            json!({"days": ["mon"], "start": "18:00", "end": "09:00", "tz": "UTC"}),
            json!({"days": ["funday"], "start": "09:00", "end": "17:00", "tz": "UTC"}),
            json!({"days": ["mon"], "start": "9:00", "end": "17:00", "tz": "UTC"}),
        ] {
            let details = [json!({"type": "mcp_tools", "tools": ["a/b"], "windows": [window]})];
            assert!(Constraints::from_authorization_details(&details).is_err());
        }
    }

    #[test]
    fn window_is_evaluated_in_its_own_time_zone() {
        let w: Window = serde_json::from_value(
            json!({"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "America/New_York"}),
        )
        .unwrap();
        // Monday 2026-11-23 15:00 UTC is 10:00 in New York.
        assert!(w.contains(1_795_446_000));
        // Monday 2026-11-23 12:00 UTC is 07:00 in New York.
        assert!(!w.contains(1_795_435_200));
    }

    #[test]
    fn constraints_read_in_plain_words() {
        let c = Constraints::from_authorization_details(&[json!({
            "type": "mcp_tools", "tools": ["expenses/submit_expense"], "deny": ["expenses/delete_*"],
            "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500}],
            "windows": [{"days": ["mon", "tue"], "start": "09:00", "end": "17:00", "tz": "UTC"}],
            "max_depth": 1
        })])
        .unwrap();
        assert_eq!(
            c.describe(),
            [
                "may call expenses/submit_expense with /amount ≤ 500",
                "never expenses/delete_*",
                "only during mon, tue 09:00–17:00 UTC",
                "may delegate once more",
            ]
        );
    }

    #[test]
    fn a_deny_pattern_hides_a_tool_an_allow_pattern_matches() {
        let c = Constraints::from_authorization_details(&[json!({
            "type": "mcp_tools", "tools": ["expenses/*"], "deny": ["expenses/delete_*"]
        })])
        .unwrap();
        assert!(c.allows_tool("expenses/submit_expense", None));
        assert!(!c.allows_tool("expenses/delete_all_expenses", None));
        assert!(!c.allows_tool("payroll/submit_expense", None));
    }
}
