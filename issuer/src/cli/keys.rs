//! `keys …`: signing keys. Pruning keeps every key that signed a token that can still be
//! valid: retired less than the longest token lifetime in force ago, as recorded by the issuers
//! on this database, not only this command's own settings.

use anyhow::bail;
use clap::Subcommand;
use portcullis_issuer::{Settings, keys, now, settings};

use super::io::print_json;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// List signing keys (never their secrets).
    List,
    /// Make a new key the one that signs; the old ones stay in the JWKS until pruned. Running
    /// issuers pick the change up within seconds.
    Rotate,
    /// Delete keys retired long enough ago that no token they signed is still valid.
    Prune {
        /// Keep keys retired less than this many seconds ago (default: the longest token
        /// lifetime any issuer on this database signs with, plus a minute).
        #[arg(long)]
        older_than: Option<i64>,
    },
}

impl KeysCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            KeysCommand::List => {
                let db = settings.open_database().await?;
                print_json(&keys::list(&db).await?)
            }
            KeysCommand::Rotate => {
                let options = settings.storage()?;
                let issuer = settings.open().await?;
                let sealing = options.key_encryption()?;
                let kid = keys::rotate(&issuer.state().db, &sealing, now()).await?;
                println!("{kid}");
                Ok(())
            }
            KeysCommand::Prune { older_than } => {
                let db = settings.open_database().await?;
                let keep = match older_than {
                    Some(keep) => keep,
                    None => {
                        let own = settings.config().max_token_lifetime();
                        settings::longest_token_lifetime(&db, own).await? + 60
                    }
                };
                if keep < 0 {
                    bail!("--older-than must not be negative");
                }
                print_json(&keys::prune(&db, now() - keep, now()).await?)
            }
        }
    }
}
