//! Runnable companions to Portcullis: example MCP servers to put behind the gateway.
//!
//! The gateway only matters in front of something, so this crate provides the something: small
//! but real MCP servers (streamable HTTP, rmcp) that also verify the downstream token the gateway
//! forwards. They serve three purposes:
//!
//! - the `portcullis-demo` binary starts them behind an issuer and a gateway to show a
//!   delegation end to end;
//! - integration tests start them in-process and read their [`expenses::ExpensesState`] to
//!   assert what actually reached the server (which user, through which agents, with which
//!   token), not only what the gateway claims it let through;
//! - the `expenses-mcp` binary runs one on its own, to point an MCP client or the gateway at.
//!
//! Nothing here is meant for production: state is in memory and there is no persistence.

pub mod agent;
pub mod browser;
pub mod conformance;
pub mod everything;
pub mod expenses;
pub mod interop;
pub mod loopback_proxy;
pub mod oauth_upstream;
pub mod person;
pub mod relay;
pub mod replica;
pub mod stack;

/// Logs to stderr, filtered by `RUST_LOG`, or by `default` when it is unset or invalid.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// A high-entropy random secret (for the demo's admin token).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    hex(&bytes)
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, as lowercase hex: how the tests name a body the upstream received.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
