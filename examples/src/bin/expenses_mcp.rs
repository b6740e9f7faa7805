//! `expenses-mcp`: runs the example expenses MCP server on its own.

use std::net::SocketAddr;

use clap::Parser;
use portcullis_examples::expenses::{self, DownstreamAuth, ExpensesConfig, ExpensesState};

/// The example expenses MCP server (streamable HTTP at /mcp).
///
/// Tools: submit_expense, list_expenses, delete_all_expenses, slow_report. Every request must
/// carry a downstream token from the Portcullis gateway: a JWT with the gateway's issuer, this
/// server's audience and an `act` chain, signed by a key from the gateway's JWKS.
///
/// Requests are only accepted for the Host names localhost, 127.0.0.1 and ::1 (DNS rebinding
/// protection). Logging follows RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(name = "expenses-mcp", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8001")]
    listen: SocketAddr,

    /// Issuer (`iss`) of the gateway's downstream tokens.
    #[arg(long, value_name = "URL", required_unless_present = "no_auth")]
    gateway_issuer: Option<String>,

    /// URL of the gateway's JWKS, fetched on the first request and when a token names an
    /// unknown key.
    #[arg(long, value_name = "URL", required_unless_present = "no_auth")]
    gateway_jwks: Option<String>,

    /// Audience (`aud`) tokens must carry: this server's identifier at the gateway.
    #[arg(long, value_name = "AUD", required_unless_present = "no_auth")]
    audience: Option<String>,

    /// Accept every request without a token. Only for local experiments.
    #[arg(long, conflicts_with_all = ["gateway_issuer", "gateway_jwks", "audience"])]
    no_auth: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    portcullis_examples::init_logging("info");
    let cli = Cli::parse();
    // clap guarantees all three are given unless --no-auth, which excludes them.
    let auth = match (cli.gateway_issuer, cli.gateway_jwks, cli.audience) {
        (Some(issuer), Some(jwks_url), Some(audience)) => Some(DownstreamAuth {
            issuer,
            jwks_url,
            audience,
        }),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "expenses MCP server listening on /mcp");
    expenses::serve(listener, ExpensesConfig { auth }, ExpensesState::default()).await?;
    Ok(())
}
