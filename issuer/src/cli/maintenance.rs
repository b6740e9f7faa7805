//! `maintenance …`: keeping the database to what is in force.

use clap::Subcommand;
use portcullis_issuer::maintenance::{self, PruneOptions};
use portcullis_issuer::{Settings, now};

#[derive(Debug, Subcommand)]
pub(super) enum MaintenanceCommand {
    /// Remove what has expired: pending authorization requests, codes, refresh tokens, spent
    /// one-time ids, revocations past the tokens they cover, ended sign-in sessions and failure
    /// counts, answered approval requests older than 30 days; with --audit-older-than-days, audit events older
    /// than that too (the first kept event is anchored, and `audit verify` starts there).
    /// Safe to run while issuers serve (a CronJob in the Helm chart).
    Prune {
        /// Count what would go; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also remove audit events older than this many days (at least 1). Off by default:
        /// the audit log is kept whole.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        audit_older_than_days: Option<u32>,
    },
}

impl MaintenanceCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            MaintenanceCommand::Prune {
                dry_run,
                audit_older_than_days,
            } => {
                let db = settings.open_database().await?;
                db.migrate().await?;
                let anchor_key = settings.storage()?.key_encryption()?.anchor_key();
                let now = now();
                let options = PruneOptions {
                    dry_run,
                    audit_before: audit_older_than_days.map(|days| now - i64::from(days) * 86_400),
                };
                let report = maintenance::prune(&db, &anchor_key, options, now).await?;
                let verb = if report.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                for (what, rows) in &report.removed {
                    println!("{verb} {rows:>8} {what}");
                }
                if let Some(seq) = report.audit_starts_at {
                    println!("the audit chain now starts at event {seq} (anchored)");
                }
                Ok(())
            }
        }
    }
}
