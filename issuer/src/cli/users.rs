//! `users …`: people who sign in at the issuer and consent for agents.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use portcullis_issuer::{Settings, now, users};

use super::io::{print_json, read_arg, read_file};

#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
    /// Create a person who can sign in and consent, with the most they may delegate.
    Create {
        /// The sign-in name (1-64 of [A-Za-z0-9._@-]); the `sub` of their tokens.
        username: String,
        /// File holding the password (at least 12 characters); without it, the password is
        /// read from PORTCULLIS_USER_PASSWORD.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// A resource they may delegate access to; repeatable.
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// Their allowance: RFC 9396 authorization_details with one "mcp_tools" entry, as JSON
        /// or @FILE. A consent can only narrow it.
        #[arg(long)]
        allow: String,
        /// Also an operator: may open the console (/console) and act there.
        #[arg(long)]
        operator: bool,
    },
    /// List people.
    List,
    /// Make a person an operator (the console), or with --off no longer one.
    Operator {
        /// Their sign-in name.
        username: String,
        /// Take the role away instead.
        #[arg(long)]
        off: bool,
    },
}

impl UsersCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            UsersCommand::Create {
                username,
                password_file,
                resources,
                allow,
                operator,
            } => {
                let password = match password_file {
                    Some(path) => read_file(&path)?.trim_end_matches(['\r', '\n']).to_owned(),
                    None => std::env::var("PORTCULLIS_USER_PASSWORD")
                        .context("give --password-file or set PORTCULLIS_USER_PASSWORD")?,
                };
                let details: Vec<serde_json::Value> = serde_json::from_str(&read_arg(&allow)?)
                    .context("--allow is not a JSON array")?;
                let allowance =
                    portcullis_policy::Constraints::from_authorization_details(&details)
                        .context("--allow")?;
                let issuer = settings.open().await?;
                let user = users::create(
                    &issuer.state().db,
                    users::NewUser {
                        username: &username,
                        password: &password,
                        resources,
                        allowance,
                        operator,
                    },
                    now(),
                )
                .await?;
                print_json(&user)
            }
            UsersCommand::List => {
                let issuer = settings.open().await?;
                print_json(&users::list(&issuer.state().db).await?)
            }
            UsersCommand::Operator { username, off } => {
                let issuer = settings.open().await?;
                let user = users::set_operator(&issuer.state().db, &username, !off, now()).await?;
                print_json(&user)
            }
        }
    }
}
