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
                let report = portcullis_issuer::audit::verify(&db).await?;
                match &report.first_break {
                    None => {
                        println!("ok: {} events, head {}", report.events, report.head);
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
