//! `audit …`: the hash-chained audit log.

use clap::Subcommand;
use portcullis_issuer::Settings;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check the whole chain; exits non-zero and names the first modified, deleted or reordered
    /// event. Prints the chain head: record it elsewhere to detect a truncated tail later.
    Verify,
}

impl AuditCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            AuditCommand::Verify => {
                let db = settings.open_database().await?;
                let anchor_key = settings.storage()?.key_encryption()?.anchor_key();
                let report = portcullis_issuer::audit::verify(&db, &anchor_key).await?;
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
