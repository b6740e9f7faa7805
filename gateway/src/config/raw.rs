//! The configuration file as written: serde mirrors of the YAML, unknown fields refused so a
//! typo cannot silently drop a setting. Nothing outside `config` sees these types; each
//! section becomes a validated value in the module named for it.

use std::path::PathBuf;

use serde::Deserialize;

use super::{SharedMode, StalenessMode};

/// The `audit:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    /// Directory of the local hash-chained log (`decisions.jsonl`).
    pub(crate) dir: PathBuf,
    /// This gateway's name at the issuer (default: `gateway`); unique per replica.
    #[serde(default)]
    pub(crate) gateway_id: Option<String>,
    /// Ship decisions to the issuer (default: true).
    #[serde(default = "default_true")]
    pub(crate) ship: bool,
    /// The issuer's ingest endpoint (default `{issuer.url}/audit/decisions`).
    #[serde(default)]
    pub(crate) ingest_url: Option<String>,
    /// File holding the issuer's ingest token (or PORTCULLIS_GATEWAY_AUDIT_INGEST_TOKEN).
    #[serde(default)]
    pub(crate) ingest_token_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Proxy listen address.
    pub(crate) listen: String,
    /// Admin listen address.
    #[serde(default = "default_admin_listen")]
    pub(crate) admin_listen: String,
    /// The gateway's public base URL: resources are `{public_url}/mcp/{name}`, and it is the
    /// `iss` of downstream tokens.
    pub(crate) public_url: String,
    /// Worker threads for the proxy; default: the number of cores.
    #[serde(default)]
    pub(crate) threads: Option<usize>,
    /// Largest request body accepted and judged, in bytes (default 4 MiB, at most 64 MiB).
    #[serde(default = "default_max_body")]
    pub(crate) max_body_bytes: usize,
    /// The most bytes of large request bodies (those over 64 KiB) held at once, across all
    /// requests (default 256 MiB), each counted twice (the body and its parsed message); at
    /// least twice `max_body_bytes`. A body that does not fit waits for room, then is refused.
    #[serde(default = "default_body_buffer")]
    pub(crate) body_buffer_bytes: usize,
    /// Allowed clock skew on token times, in seconds.
    #[serde(default = "default_leeway")]
    pub(crate) leeway_seconds: i64,
    /// Lifetime of downstream tokens, in seconds (at most 60).
    #[serde(default = "default_downstream_ttl")]
    pub(crate) downstream_token_ttl_seconds: i64,
    /// A file holding the base64url 32-byte Ed25519 seed of the key that signs downstream
    /// tokens. Replicas behind one address need the same key; without one, a key is generated
    /// at start.
    #[serde(default)]
    pub(crate) signing_key_file: Option<PathBuf>,
    /// Extra `Host` values accepted besides the public URL's host and loopback names (DNS
    /// rebinding protection); e.g. an internal service name.
    #[serde(default)]
    pub(crate) allowed_hosts: Vec<String>,
    /// `Origin` values accepted from browsers besides the public URL's own origin.
    #[serde(default)]
    pub(crate) allowed_origins: Vec<String>,
    /// A file holding the bearer token for the admin listener's `/control/*` endpoints (local
    /// kills and change freezes); `PORTCULLIS_GATEWAY_ADMIN_TOKEN` also sets it. Without either,
    /// those endpoints do not exist.
    #[serde(default)]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Refuse bearer tokens at every endpoint: only tokens bound to the agent's key, with a
    /// DPoP proof (default false; an upstream may set its own).
    #[serde(default)]
    pub(crate) require_dpop: bool,
    /// Require DPoP proofs to carry a nonce the gateway issued (RFC 9449 §9), which bounds how
    /// long a proof made in advance is good for; replicas share them through the session keys.
    #[serde(default)]
    pub(crate) dpop_nonces: bool,
    /// How many verified tokens to remember (0 disables the cache).
    #[serde(default = "default_token_cache")]
    pub(crate) token_cache_size: usize,
    /// Seconds to let in-flight requests finish on SIGTERM.
    #[serde(default = "default_grace")]
    pub(crate) grace_period_seconds: u64,
    /// The issuer.
    pub(crate) issuer: RawIssuer,
    /// The decision audit log, and where it is shipped.
    #[serde(default)]
    pub(crate) audit: Option<RawAudit>,
    /// Pin tool definitions in this file (rug-pull protection); off when absent.
    #[serde(default)]
    pub(crate) pins_file: Option<PathBuf>,
    /// How revocations reach this gateway.
    #[serde(default)]
    pub(crate) revocation: RawRevocation,
    /// The Redis the replicas share (grant-wide rate caps); each replica counts alone without.
    #[serde(default)]
    pub(crate) shared_state: Option<RawSharedState>,
    /// The keys that seal session ids, and session lifetimes.
    #[serde(default)]
    pub(crate) sessions: Option<RawSessions>,
    /// The MCP servers behind the gateway.
    pub(crate) upstreams: Vec<RawUpstream>,
    /// Endpoints that federate several upstreams under namespaced tool names.
    #[serde(default)]
    pub(crate) fleets: Vec<RawFleet>,
}

/// One fleet as written: `{name: office, members: [mail, expenses]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    /// The name in `/mcp/{name}`; shares that space with the upstreams.
    pub(crate) name: String,
    /// Names of upstreams; their tools appear as `{member}__{tool}`.
    pub(crate) members: Vec<String>,
    /// The resource identifier tokens must carry in `aud`; default `{public_url}/mcp/{name}`.
    #[serde(default)]
    pub(crate) resource: Option<String>,
}

/// The shared store as written: `{redis_url: redis://redis:6379, mode: strict}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSharedState {
    /// `redis://[:password@]host[:port][/db]`.
    #[serde(default)]
    pub(crate) redis_url: Option<String>,
    /// A file holding that URL (a mounted Secret), instead of `redis_url`.
    #[serde(default)]
    pub(crate) redis_url_file: Option<PathBuf>,
    /// `lenient` (default): count on this replica while Redis is unreachable; `strict`: refuse
    /// rate-capped calls meanwhile.
    #[serde(default)]
    pub(crate) mode: SharedMode,
    /// Prepended to every key (default `portcullis:`).
    #[serde(default = "default_key_prefix")]
    pub(crate) key_prefix: String,
    /// Longest wait for one answer from Redis, in milliseconds (default 100).
    #[serde(default = "default_shared_timeout")]
    pub(crate) timeout_ms: u64,
}

fn default_key_prefix() -> String {
    "portcullis:".into()
}
fn default_shared_timeout() -> u64 {
    100
}

/// Session settings as written: `{keys_file: /etc/portcullis/session-keys}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSessions {
    /// A file of base64url 32-byte keys, one per line; the first seals new session ids.
    #[serde(default)]
    pub(crate) keys_file: Option<PathBuf>,
    /// A session unused this long is ended (default: a day).
    #[serde(default = "default_session_idle")]
    pub(crate) idle_timeout_seconds: u64,
    /// A session id is refused this long after it was minted (default: a week).
    #[serde(default = "default_session_lifetime")]
    pub(crate) max_lifetime_seconds: u64,
}

/// A day.
pub(super) const DEFAULT_SESSION_IDLE: u64 = 24 * 3600;
/// A week.
pub(super) const DEFAULT_SESSION_LIFETIME: u64 = 7 * 24 * 3600;

fn default_session_idle() -> u64 {
    DEFAULT_SESSION_IDLE
}
fn default_session_lifetime() -> u64 {
    DEFAULT_SESSION_LIFETIME
}

/// Revocation settings as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRevocation {
    /// `lenient` (default): serve on the last known state when the issuer is unreachable;
    /// `strict`: refuse requests once the knowledge is older than `max_staleness_seconds`.
    #[serde(default)]
    pub(crate) mode: StalenessMode,
    /// How old revocation knowledge may be in strict mode, in seconds.
    #[serde(default = "default_max_staleness")]
    pub(crate) max_staleness_seconds: i64,
    /// The push stream; default `{issuer.url}/revocations/stream`.
    #[serde(default)]
    pub(crate) stream_url: Option<String>,
    /// The signed feed, polled while the stream is down; default `{issuer.url}/.well-known/revoked`.
    #[serde(default)]
    pub(crate) feed_url: Option<String>,
    /// Longest wait between reconnection attempts (and feed polls), in seconds.
    #[serde(default = "default_retry_max")]
    pub(crate) retry_max_seconds: u64,
}

impl Default for RawRevocation {
    fn default() -> Self {
        Self {
            mode: StalenessMode::default(),
            max_staleness_seconds: default_max_staleness(),
            stream_url: None,
            feed_url: None,
            retry_max_seconds: default_retry_max(),
        }
    }
}

fn default_max_staleness() -> i64 {
    60
}
fn default_retry_max() -> u64 {
    5
}

/// The issuer's settings as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIssuer {
    /// The issuer's base URL.
    pub(crate) url: String,
    /// The expected `iss`; default: `url`.
    #[serde(default)]
    pub(crate) issuer: Option<String>,
    /// Where its JWKS is; default: `{url}/.well-known/jwks.json`.
    #[serde(default)]
    pub(crate) jwks_url: Option<String>,
}

/// One upstream as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    /// The name in `/mcp/{name}` and in tool patterns `{name}/{tool}`.
    pub(crate) name: String,
    /// The MCP endpoint, e.g. `http://127.0.0.1:8001/mcp`; or, for a server that speaks
    /// stdio, `command`.
    #[serde(default)]
    pub(crate) url: Option<String>,
    /// The program to start for a server that speaks MCP over stdio.
    #[serde(default)]
    pub(crate) command: Option<RawCommand>,
    /// The resource identifier tokens must carry in `aud`; default `{public_url}/mcp/{name}`.
    #[serde(default)]
    pub(crate) resource: Option<String>,
    /// The `aud` of downstream tokens; default: `url`.
    #[serde(default)]
    pub(crate) audience: Option<String>,
    /// How the gateway authenticates to this upstream (default `mint`).
    #[serde(default)]
    pub(crate) downstream_auth: Option<RawDownstreamAuth>,
    /// Connect timeout, seconds.
    #[serde(default = "default_connect_timeout")]
    pub(crate) connect_timeout_seconds: u64,
    /// Longest silence on an upstream response (SSE included), seconds.
    #[serde(default = "default_idle_timeout")]
    pub(crate) idle_timeout_seconds: u64,
    /// Refuse bearer tokens here: only tokens bound to the agent's key, with a DPoP proof
    /// (default: the top-level `require_dpop`).
    #[serde(default)]
    pub(crate) require_dpop: Option<bool>,
    /// Answer a call of a tool the token was not granted with `403 insufficient_scope` naming
    /// the token's tools and that one, so a stock MCP client sends its person back through
    /// consent (MCP 2025-11-25 incremental consent). Off by default.
    #[serde(default)]
    pub(crate) incremental_consent: bool,
}

/// `command:` of a stdio upstream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommand {
    /// The program: a path, or a name looked up in the `PATH` it is given.
    pub(crate) program: String,
    /// Its arguments.
    #[serde(default)]
    pub(crate) args: Vec<String>,
    /// Variables set in its environment.
    #[serde(default)]
    pub(crate) env: std::collections::BTreeMap<String, String>,
    /// Variables of the gateway's own environment passed on (nothing else is).
    #[serde(default)]
    pub(crate) inherit_env: Vec<String>,
    /// Its working directory.
    #[serde(default)]
    pub(crate) working_dir: Option<PathBuf>,
    /// `pooled` (default): one process for every session; `per_session`: one each.
    #[serde(default)]
    pub(crate) instances: RawInstances,
    /// Resource limits of the process.
    #[serde(default)]
    pub(crate) limits: RawLimits,
}

/// `instances:` as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawInstances {
    #[default]
    Pooled,
    PerSession,
}

/// `limits:` as written.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    /// Address space, bytes.
    #[serde(default)]
    pub(crate) memory_bytes: Option<u64>,
    /// Open file descriptors.
    #[serde(default)]
    pub(crate) open_files: Option<u64>,
    /// CPU time, seconds.
    #[serde(default)]
    pub(crate) cpu_seconds: Option<u64>,
}

/// `downstream_auth` as written: `mint`, `none`, or
/// `{header: {name: X-Api-Key, value_from_env: EXPENSES_KEY}}` (or `value_from_file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawDownstreamAuth {
    /// `mint` or `none`.
    Named(AuthName),
    /// See [`DownstreamAuth::Header`](crate::upstream::DownstreamAuth::Header).
    Header {
        /// The header and where its value comes from.
        header: RawHeaderAuth,
    },
}

impl Default for RawDownstreamAuth {
    fn default() -> Self {
        RawDownstreamAuth::Named(AuthName::Mint)
    }
}

/// The credential kinds named by a single word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthName {
    /// See [`DownstreamAuth::Mint`](crate::upstream::DownstreamAuth::Mint).
    Mint,
    /// See [`DownstreamAuth::None`](crate::upstream::DownstreamAuth::None).
    None,
    /// See [`DownstreamAuth::OAuth`](crate::upstream::DownstreamAuth::OAuth).
    #[serde(rename = "oauth")]
    OAuth,
}

/// A static credential header for an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderAuth {
    /// The header, e.g. `Authorization` or `X-Api-Key`.
    pub(crate) name: String,
    /// An environment variable holding the value.
    #[serde(default)]
    pub(crate) value_from_env: Option<String>,
    /// A file holding the value (trailing newline ignored).
    #[serde(default)]
    pub(crate) value_from_file: Option<PathBuf>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_body_buffer() -> usize {
    256 * 1024 * 1024
}
fn default_leeway() -> i64 {
    30
}
fn default_downstream_ttl() -> i64 {
    60
}
fn default_token_cache() -> usize {
    10_000
}
fn default_grace() -> u64 {
    10
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_idle_timeout() -> u64 {
    300
}
