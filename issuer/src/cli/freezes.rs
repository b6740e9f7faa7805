//! `freezes …`: change freezes in force at every gateway.

use clap::Subcommand;
use portcullis_issuer::{Settings, freezes, now};

use super::io::print_json;

#[derive(Debug, Subcommand)]
pub(super) enum FreezesCommand {
    /// List the freezes in force.
    List,
    /// Refuse every tools/call whose upstream/tool matches PATTERN at every gateway (within a
    /// second of a running issuer noticing), until lifted.
    Set {
        /// upstream/tool, with * for any run of characters: k8s/*delete*.
        pattern: String,
        /// Why, for the console and the audit log.
        #[arg(long)]
        reason: String,
    },
    /// Lift a freeze.
    Lift {
        /// Exactly as set.
        pattern: String,
    },
}

/// Who the audit log names: the shell's user.
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("{user} (CLI)")
}

impl FreezesCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let issuer = settings.open().await?;
        let db = &issuer.state().db;
        match self {
            FreezesCommand::List => print_json(&freezes::list(db).await?),
            FreezesCommand::Set { pattern, reason } => {
                print_json(&freezes::set(db, &pattern, &reason, &operator(), now()).await?)
            }
            FreezesCommand::Lift { pattern } => {
                freezes::lift(db, &pattern, &operator(), now()).await?;
                eprintln!("lifted {pattern}");
                Ok(())
            }
        }
    }
}
