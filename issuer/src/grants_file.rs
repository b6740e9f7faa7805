//! Declarative grants: a reviewed `grants.yaml` applied like infrastructure code.
//!
//! ```yaml
//! grants:
//!   - name: alice-expenses          # the operator's stable name for the grant
//!     user: alice
//!     agent: expense-agent
//!     resources: [https://gw.example.com/mcp/expenses]
//!     expires_in: 2592000           # seconds
//!     authorization_details:
//!       - type: mcp_tools
//!         tools: [expenses/submit_expense, expenses/list_expenses]
//!         limits: [{tool: expenses/submit_expense, pointer: /amount, max: 500}]
//! ```
//!
//! [`lint`] finds what review should catch (unknown fields and types are errors already; here:
//! duplicate names, tools granted to every upstream, patterns with nothing denied, windows that
//! allow almost nothing). [`plan`] compares the file with the grants in force and [`apply`]
//! carries the plan out: a new name is created, a changed grant is revoked and re-created (a
//! grant's authority never changes under the tokens already issued from it), and with `prune`
//! a named grant missing from the file is revoked. Applying the same file twice changes nothing.

use std::collections::BTreeMap;

use portcullis_policy::revocation::RevocationKind;
use portcullis_policy::{Action, Constraints};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::grants::{self, Grant, GrantRequest};
use crate::revocation::{self, RevokeRequest};

/// The file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsFile {
    /// The grants.
    pub grants: Vec<GrantEntry>,
}

/// One grant in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEntry {
    /// The operator's stable name.
    pub name: String,
    /// The user.
    pub user: String,
    /// The agent's client_id.
    pub agent: String,
    /// Resources it may be used at.
    pub resources: Vec<String>,
    /// Lifetime from when it is applied, in seconds.
    pub expires_in: i64,
    /// What it allows.
    pub authorization_details: Constraints,
}

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GrantsFileError {
    /// Not valid YAML for this schema (the message names the place).
    #[error("{0}")]
    Syntax(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Creating a grant failed.
    #[error("grant {name}: {source}")]
    Grant {
        /// The grant's name.
        name: String,
        /// Why.
        source: grants::GrantError,
    },
    /// Revoking a grant failed.
    #[error("revoking grant {name}: {source}")]
    Revoke {
        /// The grant's name.
        name: String,
        /// Why.
        source: revocation::RevokeError,
    },
}

/// Parses a grants file.
pub fn parse(text: &str) -> Result<GrantsFile, GrantsFileError> {
    serde_yaml::from_str(text).map_err(|e| GrantsFileError::Syntax(e.to_string()))
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file must not be applied.
    Error,
    /// Worth a second look in review.
    Warning,
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious.
    pub severity: Severity,
    /// Which grant.
    pub grant: String,
    /// What.
    pub message: String,
}

/// Checks a parsed file for what review should catch.
pub fn lint(file: &GrantsFile) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut seen = BTreeMap::new();
    for entry in &file.grants {
        let mut finding = |severity, message: String| {
            findings.push(Finding {
                severity,
                grant: entry.name.clone(),
                message,
            });
        };
        if seen.insert(entry.name.as_str(), ()).is_some() {
            finding(Severity::Error, "the name is used twice".into());
        }
        if entry.expires_in <= 0 {
            finding(Severity::Error, "expires_in must be positive".into());
        } else if entry.expires_in > 366 * 86_400 {
            finding(Severity::Warning, "lasts more than a year".into());
        }
        if entry.resources.is_empty() {
            finding(Severity::Error, "names no resource".into());
        }
        let details = &entry.authorization_details;
        if details.tools().is_empty() {
            finding(Severity::Warning, "grants no tool".into());
        }
        for pattern in details.tools() {
            let text = pattern.as_str();
            if text == "*" || !text.trim_end_matches('*').contains('/') {
                finding(
                    Severity::Error,
                    format!("{text} grants tools of every upstream; name the upstream"),
                );
            } else if text.ends_with("/*") && details.deny().is_empty() {
                finding(
                    Severity::Warning,
                    format!("{text} grants every tool of its upstream, and nothing is denied"),
                );
            }
        }
        for window in details.windows() {
            if window.minutes_per_week() < 60 {
                finding(
                    Severity::Warning,
                    format!("the window {window} allows less than an hour a week"),
                );
            }
        }
    }
    findings
}

/// What applying a file would do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Names to create.
    pub create: Vec<String>,
    /// Names whose grant changes (revoked, then re-created).
    pub replace: Vec<String>,
    /// Names in force but absent from the file (revoked only with `prune`).
    pub remove: Vec<String>,
    /// Names already as the file says.
    pub unchanged: Vec<String>,
}

fn same(entry: &GrantEntry, grant: &Grant) -> bool {
    entry.user == grant.subject
        && entry.agent == grant.client_id
        && entry.resources == grant.resources
        && entry.authorization_details == grant.authorization_details
}

async fn in_force(state: &AppState, now: i64) -> Result<BTreeMap<String, Grant>, sqlx::Error> {
    Ok(grants::list(&state.db)
        .await?
        .into_iter()
        .filter(|g| g.is_active(now))
        .filter_map(|g| g.name.clone().map(|name| (name, g)))
        .collect())
}

/// Compares the file with the named grants in force.
pub async fn plan(state: &AppState, file: &GrantsFile, now: i64) -> Result<Plan, sqlx::Error> {
    let current = in_force(state, now).await?;
    let mut plan = Plan::default();
    for entry in &file.grants {
        match current.get(&entry.name) {
            None => plan.create.push(entry.name.clone()),
            Some(grant) if same(entry, grant) => plan.unchanged.push(entry.name.clone()),
            Some(_) => plan.replace.push(entry.name.clone()),
        }
    }
    plan.remove = current
        .keys()
        .filter(|name| !file.grants.iter().any(|e| &e.name == *name))
        .cloned()
        .collect();
    Ok(plan)
}

/// Carries out [`plan`]. Returns the plan that was applied.
pub async fn apply(
    state: &AppState,
    file: &GrantsFile,
    prune: bool,
    now: i64,
) -> Result<Plan, GrantsFileError> {
    let plan = plan(state, file, now).await?;
    let current = in_force(state, now).await?;
    let lifetime = state.config.max_token_lifetime();
    let revoke = |name: &str, grant: &Grant, reason: &str| {
        let request = RevokeRequest {
            kind: RevocationKind::Grant,
            value: grant.id.clone(),
            reason: format!("{reason} ({name})"),
            token_expires_at: None,
        };
        let name = name.to_owned();
        async move {
            revocation::revoke(&state.db, &state.hub, request, lifetime, now)
                .await
                .map(drop)
                .map_err(|source| GrantsFileError::Revoke { name, source })
        }
    };
    for name in &plan.replace {
        revoke(name, &current[name], "replaced by grants file").await?;
    }
    if prune {
        for name in &plan.remove {
            revoke(name, &current[name], "removed from grants file").await?;
        }
    }
    for entry in file
        .grants
        .iter()
        .filter(|e| plan.create.contains(&e.name) || plan.replace.contains(&e.name))
    {
        let request = GrantRequest {
            name: Some(entry.name.clone()),
            subject: entry.user.clone(),
            client_id: entry.agent.clone(),
            resources: entry.resources.clone(),
            authorization_details: entry.authorization_details.clone(),
            expires_in: entry.expires_in,
        };
        grants::create(&state.db, request, now)
            .await
            .map_err(|source| GrantsFileError::Grant {
                name: entry.name.clone(),
                source,
            })?;
    }
    Ok(plan)
}

/// One grant's answer to "could this call be made?".
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The grant id.
    pub grant_id: String,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The user.
    pub user: String,
    /// The agent.
    pub agent: String,
    /// Whether the call would be allowed now.
    pub allowed: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which grants in force would allow `tool` with `arguments` at `now` (their first agent; a
/// sub-agent can only be allowed less).
pub async fn who_can(
    state: &AppState,
    tool: &str,
    arguments: &Value,
    now: i64,
) -> Result<Vec<Answer>, sqlx::Error> {
    let mut answers = Vec::new();
    for grant in grants::list(&state.db).await? {
        if !grant.is_active(now) {
            continue;
        }
        let verdict = grant.authorization_details.evaluate(&Action {
            tool,
            arguments,
            at: now,
            hints: None,
        });
        if let Err(reason) = &verdict
            && reason.code() == "tool_not_granted"
        {
            continue; // not about this tool at all
        }
        answers.push(Answer {
            grant_id: grant.id,
            name: grant.name,
            user: grant.subject,
            agent: grant.client_id,
            allowed: verdict.is_ok(),
            reason: verdict.err().map(|r| r.to_string()),
        });
    }
    Ok(answers)
}
