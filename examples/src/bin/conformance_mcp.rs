//! `conformance-mcp`: the fixture upstream for the MCP conformance suite, on its own.

use std::net::SocketAddr;

use clap::Parser;

/// The tools, resources and prompts `@modelcontextprotocol/conformance server` calls
/// (streamable HTTP at /mcp), to put behind the gateway and test the gateway with the suite.
///
/// It checks no token: run it on loopback only. Logging follows RUST_LOG (default: info).
#[derive(Debug, Parser)]
#[command(name = "conformance-mcp", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8002")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    portcullis_examples::init_logging("info");
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    tracing::info!(
        "conformance fixture at http://{}/mcp",
        listener.local_addr()?
    );
    portcullis_examples::conformance::serve(listener, None).await?;
    Ok(())
}
