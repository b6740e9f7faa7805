//! The MCP servers behind the gateway, as the request path uses them: where each one is, how
//! the gateway authenticates to it ([`DownstreamAuth`], with [`downstream_token`] minting the
//! per-call tokens), and the requests the gateway sends it on its own account ([`client`]).
//!
//! An [`Upstream`] is built once per configuration (see `config`) and shared as an `Arc` by
//! the routes, the requests and the live work that use it, so work started before a reload
//! keeps the upstream it started on.

pub(crate) mod client;
pub(crate) mod downstream_token;
pub(crate) mod person_token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use self::downstream_token::DownstreamMinter;
use self::person_token::PersonTokens;

use crate::secret::Secret;
pub(crate) use crate::stdio::BridgeHandle;

/// A validated upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// Name.
    pub name: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// Whether to use TLS.
    pub tls: bool,
    /// Host name, for SNI and the `Host` header.
    pub host: String,
    /// `Host` header value (`host[:port]`).
    pub authority: String,
    /// Path of the MCP endpoint.
    pub path: String,
    /// Resource identifier expected in inbound `aud`.
    pub resource: String,
    /// `aud` of downstream tokens.
    pub audience: String,
    /// Downstream authentication.
    pub auth: DownstreamAuth,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout.
    pub idle_timeout: Duration,
    /// Bearer tokens are refused: only DPoP-bound tokens with a proof.
    pub require_dpop: bool,
    /// A call of a tool outside the token's grant is answered `403 insufficient_scope`.
    pub incremental_consent: bool,
    /// For a server that speaks stdio: the loopback bridge the address is of, kept running
    /// while any route or live work holds this upstream.
    pub(crate) stdio: Option<BridgeHandle>,
}

/// What the gateway authenticates to upstreams with: its own minted tokens, and the people's
/// tokens at upstreams that take their own accounts.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub(crate) minter: Arc<DownstreamMinter>,
    pub(crate) people: Arc<PersonTokens>,
}

/// How the gateway authenticates to an upstream. The agent's own token is never forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DownstreamAuth {
    /// A token minted per call by the gateway: `aud` = the upstream, same `sub` and `act`.
    #[default]
    Mint,
    /// No credential (the upstream trusts its network position).
    None,
    /// A fixed credential the agent never sees, e.g. the upstream's API key: `(header, value)`.
    Header(http::HeaderName, Secret),
    /// The person's own access token at the upstream's authorization server, linked once and
    /// kept by the issuer (`upstream_token`).
    OAuth,
}
