//! `revocations …`: the revocation log (revoking is `revoke`).

use clap::Subcommand;
use portcullis_issuer::{Settings, revocation};

use super::io::print_json;

#[derive(Debug, Subcommand)]
pub(super) enum RevocationsCommand {
    /// List revocations, oldest first, as JSON (kept until no token they cover can be valid).
    List {
        /// Only those after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

impl RevocationsCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let db = settings.open_database().await?;
        match self {
            RevocationsCommand::List { after, limit } => {
                print_json(&revocation::list(&db, after, limit.max(1)).await?)
            }
        }
    }
}
