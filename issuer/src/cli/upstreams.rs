//! `upstreams …`: upstreams with an authorization server of their own, where people link
//! their accounts (`downstream_auth: oauth` at the gateway).

use clap::Subcommand;
use portcullis_issuer::{Settings, now, upstream_links};

use super::io::print_json;

#[derive(Debug, Subcommand)]
pub(super) enum UpstreamsCommand {
    /// Register an upstream: read its RFC 9728 metadata and its authorization server's, and
    /// register this issuer there as a client. People then link their accounts at
    /// {issuer}/link?resource=RESOURCE (their agents are sent there when they have not).
    Add {
        /// The resource grants name for it at the gateway: {public_url}/mcp/{name}.
        #[arg(long)]
        resource: String,
        /// Its MCP endpoint, e.g. https://notes.example.com/mcp.
        #[arg(long)]
        upstream_url: String,
    },
}

impl UpstreamsCommand {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let issuer = settings.open().await?;
        match self {
            UpstreamsCommand::Add {
                resource,
                upstream_url,
            } => print_json(
                &upstream_links::register(issuer.state(), &resource, &upstream_url, now()).await?,
            ),
        }
    }
}
