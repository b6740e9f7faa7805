//! `clients …`: agents (OAuth clients) registered by an operator.

use anyhow::bail;
use clap::Subcommand;
use portcullis_issuer::token::grant_type::GrantTypes;
use portcullis_issuer::{Settings, client_metadata, clients, now};

use super::io::print_json;

#[derive(Debug, Subcommand)]
pub(super) enum ClientsCommand {
    /// Register an agent; prints its client_id and secret (shown only once) as JSON.
    Create {
        /// A human-readable name.
        #[arg(long)]
        name: String,
        /// The client_id to use (1-64 of [A-Za-z0-9._-]); generated when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Where authorization responses may go (exact match; https, or http to loopback);
        /// repeatable. Needed for the authorization-code flow.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public client (a native or browser app that cannot keep a secret): no secret is
        /// made, and it may only use the authorization-code flow, bound by PKCE.
        #[arg(long, requires = "redirect_uris")]
        public: bool,
    },
    /// List registered agents.
    List,
}

impl ClientsCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        match self {
            ClientsCommand::Create {
                name,
                id,
                redirect_uris,
                public,
            } => {
                if let Some(bad) = redirect_uris
                    .iter()
                    .find(|u| !client_metadata::valid_redirect_uri(u))
                {
                    bail!("--redirect-uri {bad}: use https, or http to a loopback host");
                }
                let issuer = settings.open().await?;
                let db = &issuer.state().db;
                if public {
                    let client = clients::Client {
                        client_id: id.unwrap_or_else(|| clients::generated_id("app")),
                        name,
                        created_at: now(),
                        redirect_uris,
                        auth_method: clients::AuthMethod::None,
                        jwks: None,
                        origin: clients::Origin::Operator,
                        fetched_at: None,
                        grant_types: GrantTypes::code_flow(),
                    };
                    if !clients::insert(db, &client, "", false).await? {
                        bail!("client {:?} already exists", client.client_id);
                    }
                    print_json(&client)
                } else {
                    let created =
                        clients::register(db, id.as_deref(), &name, redirect_uris, now()).await?;
                    print_json(&created)
                }
            }
            ClientsCommand::List => {
                let issuer = settings.open().await?;
                print_json(&clients::list(&issuer.state().db).await?)
            }
        }
    }
}
