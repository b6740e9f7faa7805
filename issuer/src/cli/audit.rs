//! `audit …`: the hash-chained audit log.

use clap::Subcommand;
use portcullis_issuer::Settings;
use portcullis_issuer::audit::{self, EventFilter};
use serde_json::json;

use super::io::print_json;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check the whole chain; exits non-zero and names the first modified, deleted or reordered
    /// event. Prints the chain head: record it elsewhere to detect a truncated tail later.
    Verify,
    /// Find events, newest first, as JSON: {"items": [...], "next_cursor": …}. Pass
    /// next_cursor as --cursor for the next page.
    Query {
        /// This kind exactly: grant.created, token.exchanged, revocation, gateway.decision, …
        #[arg(long)]
        kind: Option<String>,
        /// About this user.
        #[arg(long)]
        user: Option<String>,
        /// About this agent (acting, or the client).
        #[arg(long)]
        agent: Option<String>,
        /// About this grant.
        #[arg(long)]
        grant: Option<String>,
        /// At or after, Unix seconds.
        #[arg(long)]
        since: Option<i64>,
        /// Before, Unix seconds.
        #[arg(long)]
        until: Option<i64>,
        /// At most this many events.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500))]
        limit: u16,
        /// Where the previous page stopped.
        #[arg(long)]
        cursor: Option<i64>,
    },
}

impl AuditCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            AuditCommand::Query {
                kind,
                user,
                agent,
                grant,
                since,
                until,
                limit,
                cursor,
            } => {
                let db = settings.open_database().await?;
                let filter = EventFilter {
                    kind,
                    user,
                    agent,
                    grant,
                    since,
                    until,
                };
                let (items, next) = audit::query(&db, &filter, cursor, usize::from(limit)).await?;
                print_json(&json!({"items": items, "next_cursor": next}))
            }
            AuditCommand::Verify => {
                let db = settings.open_database().await?;
                let anchor_key = settings.storage()?.key_encryption()?.anchor_key();
                let report = audit::verify(&db, &anchor_key).await?;
                match &report.first_break {
                    None => {
                        let from = match report.starts_at {
                            1 => String::new(),
                            seq => format!(" from the anchored event {seq} (older ones pruned)"),
                        };
                        println!("ok: {} events{from}, head {}", report.events, report.head);
                        Ok(())
                    }
                    Some(problem) => {
                        eprintln!("BROKEN after {} good events: {problem}", report.events);
                        Err(anyhow::anyhow!("the audit chain is broken"))
                    }
                }
            }
        }
    }
}
