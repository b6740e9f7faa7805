//! `grants …`: grants made by hand, grants files (lint in CI, apply to roll out), and who can
//! make a call.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use portcullis_issuer::grants::{self, GrantRequest};
use portcullis_issuer::{Settings, grants_file, now};

use super::io::{print_json, read_arg, read_file};

#[derive(Debug, Subcommand)]
pub(super) enum GrantsCommand {
    /// Give an agent bounded authority on behalf of a user; prints the grant as JSON.
    Create {
        /// The user (the `sub` of every token from this grant).
        #[arg(long)]
        user: String,
        /// The agent's client_id.
        #[arg(long)]
        client: String,
        /// A resource the grant may be used at (the gateway URL of one upstream); repeatable.
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// RFC 9396 authorization_details with one "mcp_tools" entry, as JSON or @FILE.
        #[arg(long)]
        details: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        expires_in: i64,
    },
    /// List grants, newest first.
    List {
        /// Only those this user gave.
        #[arg(long)]
        user: Option<String>,
        /// Only those given to this agent (client_id).
        #[arg(long)]
        agent: Option<String>,
        /// Only those in this state now.
        #[arg(long, value_enum)]
        status: Option<grants::GrantStatus>,
    },
    /// Check a grants file for errors and risky grants; exits non-zero on an error (for CI).
    Lint {
        /// The grants file (YAML).
        file: PathBuf,
        /// Treat warnings as errors too.
        #[arg(long)]
        strict: bool,
    },
    /// Make the named grants in force match a grants file; prints what changed. Idempotent.
    Apply {
        /// The grants file (YAML).
        file: PathBuf,
        /// Also revoke named grants that are not in the file.
        #[arg(long)]
        prune: bool,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Which users and agents could make this call now, and why the others could not.
    WhoCan {
        /// The tool, as upstream/tool.
        #[arg(long)]
        tool: String,
        /// An argument, as JSON-POINTER=VALUE (VALUE is JSON, or else a string); repeatable.
        #[arg(long = "arg")]
        args: Vec<String>,
    },
}

impl GrantsCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            GrantsCommand::Create {
                user,
                client,
                resources,
                details,
                expires_in,
            } => {
                let details: Vec<serde_json::Value> = serde_json::from_str(&read_arg(&details)?)
                    .context("--details is not a JSON array")?;
                let authorization_details =
                    portcullis_policy::Constraints::from_authorization_details(&details)?;
                let issuer = settings.open().await?;
                let request = GrantRequest {
                    name: None,
                    subject: user,
                    client_id: client,
                    resources,
                    authorization_details,
                    expires_in,
                };
                print_json(&grants::create(&issuer.state().db, request, now()).await?)
            }
            GrantsCommand::List {
                user,
                agent,
                status,
            } => {
                let db = settings.open_database().await?;
                let filter = grants::GrantFilter {
                    user,
                    agent,
                    status,
                };
                print_json(&grants::page(&db, &filter, None, i64::MAX, now()).await?)
            }
            GrantsCommand::Lint { file, strict } => lint(&file, strict),
            GrantsCommand::Apply {
                file,
                prune,
                dry_run,
            } => apply(settings, &file, prune, dry_run).await,
            GrantsCommand::WhoCan { tool, args } => {
                let mut arguments = serde_json::json!({});
                for arg in &args {
                    let Some((pointer, value)) = arg.split_once('=') else {
                        bail!("--arg {arg:?} is not POINTER=VALUE");
                    };
                    let value =
                        serde_json::from_str(value).unwrap_or_else(|_| serde_json::json!(value));
                    set_pointer(&mut arguments, pointer, value)?;
                }
                let issuer = settings.open().await?;
                print_json(&grants_file::who_can(issuer.state(), &tool, &arguments, now()).await?)
            }
        }
    }
}

fn parse(file: &std::path::Path) -> anyhow::Result<grants_file::GrantsFile> {
    grants_file::parse(&read_file(file)?).with_context(|| file.display().to_string())
}

fn lint(file: &std::path::Path, strict: bool) -> anyhow::Result<()> {
    let parsed = parse(file)?;
    let findings = grants_file::lint(&parsed);
    for f in &findings {
        println!(
            "{}: {:?}: {}: {}",
            file.display(),
            f.severity,
            f.grant,
            f.message
        );
    }
    let failing = findings
        .iter()
        .any(|f| f.severity == grants_file::Severity::Error || strict);
    if failing {
        bail!("{} finding(s) in {}", findings.len(), file.display());
    }
    println!("{}: {} grant(s), ok", file.display(), parsed.grants.len());
    Ok(())
}

async fn apply(
    settings: &Settings,
    file: &std::path::Path,
    prune: bool,
    dry_run: bool,
) -> anyhow::Result<()> {
    let parsed = parse(file)?;
    let errors: Vec<_> = grants_file::lint(&parsed)
        .into_iter()
        .filter(|f| f.severity == grants_file::Severity::Error)
        .collect();
    if let Some(first) = errors.first() {
        bail!(
            "{} has errors (run grants lint): {}: {}",
            file.display(),
            first.grant,
            first.message
        );
    }
    let issuer = settings.open().await?;
    let plan = if dry_run {
        grants_file::plan(issuer.state(), &parsed, now()).await?
    } else {
        grants_file::apply(issuer.state(), &parsed, prune, now()).await?
    };
    for (sign, names) in [
        ("+", &plan.create),
        ("~", &plan.replace),
        ("-", &plan.remove),
    ] {
        for name in names {
            let note = if sign == "-" && !prune {
                " (kept: use --prune to revoke)"
            } else {
                ""
            };
            println!("{sign} {name}{note}");
        }
    }
    println!(
        "{} created, {} replaced, {} unchanged{}",
        plan.create.len(),
        plan.replace.len(),
        plan.unchanged.len(),
        if dry_run { " (dry run)" } else { "" }
    );
    Ok(())
}

/// Sets `value` at a JSON Pointer, creating objects on the way.
fn set_pointer(
    root: &mut serde_json::Value,
    pointer: &str,
    value: serde_json::Value,
) -> anyhow::Result<()> {
    let Some(path) = pointer.strip_prefix('/') else {
        bail!("{pointer:?} is not a JSON Pointer (it starts with '/')");
    };
    let mut node = root;
    let parts: Vec<String> = path
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let object = node.as_object_mut().ok_or_else(|| {
            anyhow::anyhow!("{pointer:?} goes through a value that is not an object")
        })?;
        if i + 1 == parts.len() {
            object.insert(part.clone(), value);
            return Ok(());
        }
        node = object
            .entry(part.clone())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}
