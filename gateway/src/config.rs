//! The gateway's YAML configuration, validated at load into ready-to-use values.
//!
//! [`RawConfig`] mirrors the file (unknown fields are errors, so a typo cannot silently drop a
//! setting); [`Config`] is what the proxy reads, with URLs parsed, addresses resolved and
//! defaults filled in. Every validation error names the field path, e.g.
//! `upstreams[1].url: scheme must be http or https`.
//!
//! ```yaml
//! listen: 127.0.0.1:8080          # the MCP proxy port
//! admin_listen: 127.0.0.1:9090    # /metrics, /healthz, /readyz
//! public_url: https://gw.example.com
//! issuer:
//!   url: https://issuer.example.com
//! upstreams:
//!   - name: expenses
//!     url: http://127.0.0.1:8001/mcp
//!     downstream_auth: mint       # or: none
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::fleet::Fleet;

/// Pingora replays a request body it has buffered for us only up to 64 KiB, so a larger body
/// could not be judged before it is sent; larger bodies are refused with 413.
pub const MAX_BODY_LIMIT: usize = 64 * 1024;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{0}")]
    Syntax(String),
    /// A field has an unusable value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The `audit:` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Directory of the local hash-chained log (`decisions.jsonl`).
    pub dir: PathBuf,
    /// This gateway's name at the issuer (default: `gateway`); unique per replica.
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Ship decisions to the issuer (default: true).
    #[serde(default = "default_true")]
    pub ship: bool,
    /// The issuer's ingest endpoint (default `{issuer.url}/audit/decisions`).
    #[serde(default)]
    pub ingest_url: Option<String>,
    /// File holding the issuer's ingest token (or PORTCULLIS_GATEWAY_AUDIT_INGEST_TOKEN).
    #[serde(default)]
    pub ingest_token_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Proxy listen address.
    pub listen: String,
    /// Admin listen address.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// The gateway's public base URL: resources are `{public_url}/mcp/{name}`, and it is the
    /// `iss` of downstream tokens.
    pub public_url: String,
    /// Worker threads for the proxy; default: the number of cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Largest request body accepted, in bytes (at most 65536).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Allowed clock skew on token times, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: i64,
    /// Lifetime of downstream tokens, in seconds (at most 60).
    #[serde(default = "default_downstream_ttl")]
    pub downstream_token_ttl_seconds: i64,
    /// A file holding the base64url 32-byte Ed25519 seed of the key that signs downstream
    /// tokens. Replicas behind one address need the same key; without one, a key is generated
    /// at start.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Extra `Host` values accepted besides the public URL's host and loopback names (DNS
    /// rebinding protection); e.g. an internal service name.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted from browsers besides the public URL's own origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// A file holding the bearer token for the admin listener's `/control/*` endpoints (local
    /// kills and change freezes); `PORTCULLIS_GATEWAY_ADMIN_TOKEN` also sets it. Without either,
    /// those endpoints do not exist.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// How many verified tokens to remember (0 disables the cache).
    #[serde(default = "default_token_cache")]
    pub token_cache_size: usize,
    /// Seconds to let in-flight requests finish on SIGTERM.
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u64,
    /// The issuer.
    pub issuer: RawIssuer,
    /// The decision audit log, and where it is shipped.
    #[serde(default)]
    pub audit: Option<RawAudit>,
    /// Pin tool definitions in this file (rug-pull protection); off when absent.
    #[serde(default)]
    pub pins_file: Option<PathBuf>,
    /// How revocations reach this gateway.
    #[serde(default)]
    pub revocation: RawRevocation,
    /// The MCP servers behind the gateway.
    pub upstreams: Vec<RawUpstream>,
    /// Endpoints that federate several upstreams under namespaced tool names.
    #[serde(default)]
    pub fleets: Vec<RawFleet>,
}

/// One fleet as written: `{name: office, members: [mail, expenses]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    /// The name in `/mcp/{name}`; shares that space with the upstreams.
    pub name: String,
    /// Names of upstreams; their tools appear as `{member}__{tool}`.
    pub members: Vec<String>,
    /// The resource identifier tokens must carry in `aud`; default `{public_url}/mcp/{name}`.
    #[serde(default)]
    pub resource: Option<String>,
}

/// Revocation settings as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRevocation {
    /// `lenient` (default): serve on the last known state when the issuer is unreachable;
    /// `strict`: refuse requests once the knowledge is older than `max_staleness_seconds`.
    #[serde(default)]
    pub mode: crate::revocation::StalenessMode,
    /// How old revocation knowledge may be in strict mode, in seconds.
    #[serde(default = "default_max_staleness")]
    pub max_staleness_seconds: i64,
    /// The push stream; default `{issuer.url}/revocations/stream`.
    #[serde(default)]
    pub stream_url: Option<String>,
    /// The signed feed, polled while the stream is down; default `{issuer.url}/.well-known/revoked`.
    #[serde(default)]
    pub feed_url: Option<String>,
    /// Longest wait between reconnection attempts (and feed polls), in seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
}

impl Default for RawRevocation {
    fn default() -> Self {
        Self {
            mode: crate::revocation::StalenessMode::default(),
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
pub struct RawIssuer {
    /// The issuer's base URL.
    pub url: String,
    /// The expected `iss`; default: `url`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Where its JWKS is; default: `{url}/.well-known/jwks.json`.
    #[serde(default)]
    pub jwks_url: Option<String>,
}

/// One upstream as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// The name in `/mcp/{name}` and in tool patterns `{name}/{tool}`.
    pub name: String,
    /// The MCP endpoint, e.g. `http://127.0.0.1:8001/mcp`.
    pub url: String,
    /// The resource identifier tokens must carry in `aud`; default `{public_url}/mcp/{name}`.
    #[serde(default)]
    pub resource: Option<String>,
    /// The `aud` of downstream tokens; default: `url`.
    #[serde(default)]
    pub audience: Option<String>,
    /// How the gateway authenticates to this upstream.
    #[serde(default)]
    pub downstream_auth: RawDownstreamAuth,
    /// Connect timeout, seconds.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Longest silence on an upstream response (SSE included), seconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
}

/// `downstream_auth` as written: `mint`, `none`, or
/// `{header: {name: X-Api-Key, value_from_env: EXPENSES_KEY}}` (or `value_from_file`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum RawDownstreamAuth {
    /// `mint` or `none`.
    Named(AuthName),
    /// See [`DownstreamAuth::Header`].
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
pub enum AuthName {
    /// See [`DownstreamAuth::Mint`].
    Mint,
    /// See [`DownstreamAuth::None`].
    None,
}

/// A static credential header for an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderAuth {
    /// The header, e.g. `Authorization` or `X-Api-Key`.
    pub name: String,
    /// An environment variable holding the value.
    #[serde(default)]
    pub value_from_env: Option<String>,
    /// A file holding the value (trailing newline ignored).
    #[serde(default)]
    pub value_from_file: Option<PathBuf>,
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
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
}

/// Headers the gateway itself sets or strips; a credential header may not be one of them.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "mcp-session-id",
    "mcp-protocol-version",
    "cookie",
    "proxy-authorization",
];

fn downstream_auth(field: &str, raw: RawDownstreamAuth) -> Result<DownstreamAuth, ConfigError> {
    let RawHeaderAuth {
        name,
        value_from_env,
        value_from_file,
    } = match raw {
        RawDownstreamAuth::Named(AuthName::Mint) => return Ok(DownstreamAuth::Mint),
        RawDownstreamAuth::Named(AuthName::None) => return Ok(DownstreamAuth::None),
        RawDownstreamAuth::Header { header } => header,
    };
    let field = format!("{field}.header");
    let header = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        invalid(
            format!("{field}.name"),
            format!("{name:?} is not a header name"),
        )
    })?;
    if RESERVED_HEADERS.contains(&header.as_str()) {
        return Err(invalid(
            format!("{field}.name"),
            format!("{header} is set by the gateway"),
        ));
    }
    let value = match (value_from_env, value_from_file) {
        (Some(var), None) => std::env::var(&var).map_err(|_| {
            invalid(
                format!("{field}.value_from_env"),
                format!("{var} is not set"),
            )
        })?,
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| {
                invalid(
                    format!("{field}.value_from_file"),
                    format!("{}: {e}", path.display()),
                )
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        _ => {
            return Err(invalid(
                field,
                "give exactly one of value_from_env and value_from_file",
            ));
        }
    };
    if value.is_empty() || http::HeaderValue::from_str(&value).is_err() {
        return Err(invalid(
            field,
            "the value is empty or not a valid header value",
        ));
    }
    Ok(DownstreamAuth::Header(header, Secret(value)))
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_max_body() -> usize {
    MAX_BODY_LIMIT
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

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Proxy listen address.
    pub listen: SocketAddr,
    /// Admin listen address.
    pub admin_listen: SocketAddr,
    /// Public base URL, without a trailing slash.
    pub public_url: String,
    /// Proxy worker threads.
    pub threads: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Clock skew.
    pub leeway_seconds: i64,
    /// Downstream token lifetime.
    pub downstream_token_ttl_seconds: i64,
    /// Downstream signing key seed file.
    pub signing_key_file: Option<PathBuf>,
    /// SIGTERM grace period.
    pub grace_period_seconds: u64,
    /// Verified-token cache capacity.
    pub token_cache_size: usize,
    /// Admin token for `/control/*`.
    pub admin_token: Option<String>,
    /// Extra accepted `Host` values.
    pub allowed_hosts: Vec<String>,
    /// Extra accepted `Origin` values.
    pub allowed_origins: Vec<String>,
    /// Expected `iss`.
    pub issuer: String,
    /// JWKS URL.
    pub jwks_url: String,
    /// Staleness policy.
    pub revocation_mode: crate::revocation::StalenessMode,
    /// Strict-mode bound, seconds.
    pub max_staleness_seconds: i64,
    /// Where revocations are published.
    pub revocation_sources: crate::revocation::Sources,
    /// Longest wait between reconnection attempts.
    pub revocation_retry_max: Duration,
    /// Upstreams (shared with the requests and live work that use them, across reloads).
    pub upstreams: Vec<Arc<Upstream>>,
    /// Fleets over those upstreams.
    pub fleets: Vec<Arc<Fleet>>,
    /// The decision audit log, if configured.
    pub audit: Option<crate::decision_log::AuditConfig>,
    /// The tool pins file, if pinning is on.
    pub pins_file: Option<PathBuf>,
    /// The file this was read from, watched for changes by a running gateway.
    pub source: Option<PathBuf>,
}

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
}

struct ParsedUrl {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn parse_url(field: &str, text: &str) -> Result<ParsedUrl, ConfigError> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(invalid(field, "scheme must be http or https"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid(field, "needs a host, and no user info"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(field, "must not carry a query or fragment"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port
                .parse()
                .map_err(|_| invalid(field, format!("bad port {port:?}")))?;
            (host.to_owned(), port)
        }
        _ => (authority.to_owned(), if tls { 443 } else { 80 }),
    };
    Ok(ParsedUrl {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

fn audit_config(
    raw: RawAudit,
    issuer_url: &str,
) -> Result<crate::decision_log::AuditConfig, ConfigError> {
    let gateway_id = raw.gateway_id.unwrap_or_else(|| "gateway".into());
    if !valid_name(&gateway_id) {
        return Err(invalid(
            "audit.gateway_id",
            "use 1-64 characters of [A-Za-z0-9_.-]",
        ));
    }
    let ship_to = if raw.ship {
        let url = raw
            .ingest_url
            .unwrap_or_else(|| format!("{issuer_url}/audit/decisions"));
        parse_url("audit.ingest_url", &url)?;
        let token = match &raw.ingest_token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    invalid(
                        "audit.ingest_token_file",
                        format!("{}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
            None => std::env::var("PORTCULLIS_GATEWAY_AUDIT_INGEST_TOKEN").map_err(|_| {
                invalid(
                    "audit.ingest_token_file",
                    "shipping needs the issuer's ingest token (this file, or \
                     PORTCULLIS_GATEWAY_AUDIT_INGEST_TOKEN); or set audit.ship: false",
                )
            })?,
        };
        Some((url, token))
    } else {
        None
    };
    Ok(crate::decision_log::AuditConfig {
        dir: raw.dir,
        gateway_id,
        ship_to,
    })
}

fn fleets(
    raw: Vec<RawFleet>,
    upstreams: &[Arc<Upstream>],
    public_url: &str,
) -> Result<Vec<Arc<Fleet>>, ConfigError> {
    let mut fleets: Vec<Arc<Fleet>> = Vec::with_capacity(raw.len());
    for (i, fleet) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("fleets[{i}].{f}");
        if !valid_name(&fleet.name) {
            return Err(invalid(
                field("name"),
                "use 1-64 characters of [A-Za-z0-9_.-]",
            ));
        }
        if upstreams.iter().any(|u| u.name == fleet.name)
            || fleets.iter().any(|f| f.name == fleet.name)
        {
            return Err(invalid(
                field("name"),
                format!("{:?} already names an upstream or fleet", fleet.name),
            ));
        }
        let resource = fleet
            .resource
            .unwrap_or_else(|| format!("{public_url}/mcp/{}", fleet.name));
        if upstreams.iter().any(|u| u.resource == resource)
            || fleets.iter().any(|f| f.resource == resource)
        {
            return Err(invalid(
                field("resource"),
                format!("{resource:?} is used twice"),
            ));
        }
        if fleet.members.is_empty() {
            return Err(invalid(field("members"), "name at least one upstream"));
        }
        let mut members: Vec<Arc<Upstream>> = Vec::with_capacity(fleet.members.len());
        for (j, name) in fleet.members.iter().enumerate() {
            let field = field(&format!("members[{j}]"));
            let upstream = upstreams
                .iter()
                .find(|u| u.name == *name)
                .ok_or_else(|| invalid(&field, format!("no upstream is named {name:?}")))?;
            if members.iter().any(|m| m.name == *name) {
                return Err(invalid(field, format!("{name:?} is listed twice")));
            }
            if !crate::fleet::valid_member_name(name) {
                return Err(invalid(
                    field,
                    format!(
                        "{name:?} contains \"__\" or ends in \"_\": its namespaced tool \
                         names could be read two ways"
                    ),
                ));
            }
            members.push(upstream.clone());
        }
        fleets.push(Arc::new(Fleet {
            name: fleet.name,
            resource,
            members,
        }));
    }
    Ok(fleets)
}

fn socket_addr(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| invalid(field, format!("{text:?} is not an IP:port address")))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_yaml(&text)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        Self::validate(raw)
    }

    /// Validates a parsed file.
    pub fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let public_url = raw.public_url.trim_end_matches('/').to_owned();
        parse_url("public_url", &public_url)?;
        if raw.max_body_bytes == 0 || raw.max_body_bytes > MAX_BODY_LIMIT {
            return Err(invalid(
                "max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT}"),
            ));
        }
        if !(1..=60).contains(&raw.downstream_token_ttl_seconds) {
            return Err(invalid("downstream_token_ttl_seconds", "must be 1 to 60"));
        }
        if !(0..=300).contains(&raw.leeway_seconds) {
            return Err(invalid("leeway_seconds", "must be 0 to 300"));
        }
        let threads = match raw.threads {
            Some(0) => return Err(invalid("threads", "must be at least 1")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let issuer_url = raw.issuer.url.trim_end_matches('/').to_owned();
        parse_url("issuer.url", &issuer_url)?;
        let jwks_url = raw
            .issuer
            .jwks_url
            .unwrap_or_else(|| format!("{issuer_url}/.well-known/jwks.json"));
        parse_url("issuer.jwks_url", &jwks_url)?;
        let revocation = raw.revocation;
        if !(1..=3600).contains(&revocation.max_staleness_seconds) {
            return Err(invalid(
                "revocation.max_staleness_seconds",
                "must be 1 to 3600",
            ));
        }
        if !(1..=300).contains(&revocation.retry_max_seconds) {
            return Err(invalid("revocation.retry_max_seconds", "must be 1 to 300"));
        }
        let stream_url = revocation
            .stream_url
            .unwrap_or_else(|| format!("{issuer_url}/revocations/stream"));
        parse_url("revocation.stream_url", &stream_url)?;
        let feed_url = revocation
            .feed_url
            .unwrap_or_else(|| format!("{issuer_url}/.well-known/revoked"));
        parse_url("revocation.feed_url", &feed_url)?;
        if raw.upstreams.is_empty() {
            return Err(invalid("upstreams", "name at least one upstream"));
        }
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (i, up) in raw.upstreams.into_iter().enumerate() {
            let field = |f: &str| format!("upstreams[{i}].{f}");
            if !valid_name(&up.name) {
                return Err(invalid(
                    field("name"),
                    "use 1-64 characters of [A-Za-z0-9_.-]",
                ));
            }
            if upstreams.iter().any(|u: &Arc<Upstream>| u.name == up.name) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} is used twice", up.name),
                ));
            }
            let url = parse_url(&field("url"), &up.url)?;
            let addr = (url.host.as_str(), url.port)
                .to_socket_addrs()
                .map_err(|e| invalid(field("url"), format!("cannot resolve {}: {e}", url.host)))?
                .next()
                .ok_or_else(|| {
                    invalid(field("url"), format!("{} resolves to nothing", url.host))
                })?;
            let resource = up
                .resource
                .unwrap_or_else(|| format!("{public_url}/mcp/{}", up.name));
            // A token is bound to one resource; two upstreams sharing one would accept each
            // other's tokens.
            if upstreams
                .iter()
                .any(|u: &Arc<Upstream>| u.resource == resource)
            {
                return Err(invalid(
                    field("resource"),
                    format!("{resource:?} is used twice"),
                ));
            }
            if up.connect_timeout_seconds == 0 || up.idle_timeout_seconds == 0 {
                return Err(invalid(
                    field("*_timeout_seconds"),
                    "timeouts must be positive",
                ));
            }
            upstreams.push(Arc::new(Upstream {
                resource,
                audience: up.audience.unwrap_or_else(|| up.url.clone()),
                name: up.name,
                addr,
                tls: url.tls,
                host: url.host,
                authority: url.authority,
                path: url.path,
                auth: downstream_auth(&field("downstream_auth"), up.downstream_auth)?,
                connect_timeout: Duration::from_secs(up.connect_timeout_seconds),
                idle_timeout: Duration::from_secs(up.idle_timeout_seconds),
            }));
        }
        let admin_token = match &raw.admin_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| invalid("admin_token_file", format!("{}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("PORTCULLIS_GATEWAY_ADMIN_TOKEN").ok(),
        };
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "admin_token_file",
                "the admin token must be at least 16 characters",
            ));
        }
        let fleets = fleets(raw.fleets, &upstreams, &public_url)?;
        let audit = raw
            .audit
            .map(|audit| audit_config(audit, &issuer_url))
            .transpose()?;
        Ok(Config {
            fleets,
            audit,
            pins_file: raw.pins_file,
            source: None,
            admin_token,
            allowed_hosts: raw.allowed_hosts,
            allowed_origins: raw.allowed_origins,
            listen: socket_addr("listen", &raw.listen)?,
            admin_listen: socket_addr("admin_listen", &raw.admin_listen)?,
            public_url,
            threads,
            max_body_bytes: raw.max_body_bytes,
            leeway_seconds: raw.leeway_seconds,
            downstream_token_ttl_seconds: raw.downstream_token_ttl_seconds,
            signing_key_file: raw.signing_key_file,
            grace_period_seconds: raw.grace_period_seconds,
            token_cache_size: raw.token_cache_size,
            issuer: raw.issuer.issuer.unwrap_or_else(|| issuer_url.clone()),
            jwks_url,
            revocation_mode: revocation.mode,
            max_staleness_seconds: revocation.max_staleness_seconds,
            revocation_sources: crate::revocation::Sources {
                stream_url,
                feed_url,
            },
            revocation_retry_max: Duration::from_secs(revocation.retry_max_seconds),
            upstreams,
        })
    }

    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "
listen: 127.0.0.1:8080
public_url: https://gw.example.com/
issuer: {url: 'http://127.0.0.1:9000'}
upstreams:
  - {name: expenses, url: 'http://127.0.0.1:8001/mcp'}
";

    #[test]
    fn defaults_are_filled_in() {
        let c = Config::from_yaml(BASE).unwrap();
        let up = c.upstream("expenses").unwrap();
        assert_eq!(up.resource, "https://gw.example.com/mcp/expenses");
        assert_eq!(up.audience, "http://127.0.0.1:8001/mcp");
        assert_eq!(up.path, "/mcp");
        assert_eq!(up.authority, "127.0.0.1:8001");
        assert_eq!(up.auth, DownstreamAuth::Mint);
        assert_eq!(c.jwks_url, "http://127.0.0.1:9000/.well-known/jwks.json");
        assert_eq!(c.issuer, "http://127.0.0.1:9000");
        assert_eq!(c.max_body_bytes, MAX_BODY_LIMIT);
    }

    #[test]
    fn a_fleet_names_existing_upstreams_whose_namespaced_names_split_one_way() {
        let two = BASE.replace(
            "upstreams:\n",
            "upstreams:\n  - {name: mail, url: 'http://127.0.0.1:8002/mcp'}\n",
        );
        let config = Config::from_yaml(&format!(
            "{two}fleets: [{{name: office, members: [mail, expenses]}}]\n"
        ))
        .unwrap();
        let fleet = &config.fleets[0];
        assert_eq!(fleet.resource, "https://gw.example.com/mcp/office");
        let members: Vec<&str> = fleet.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(members, ["mail", "expenses"]);

        for (fleets, field) in [
            (
                "[{name: office, members: [nosuch]}]",
                "fleets[0].members[0]",
            ),
            (
                "[{name: office, members: [mail, mail]}]",
                "fleets[0].members[1]",
            ),
            ("[{name: office, members: []}]", "fleets[0].members"),
            ("[{name: mail, members: [expenses]}]", "fleets[0].name"),
            (
                "[{name: a, members: [mail]}, {name: a, members: [expenses]}]",
                "fleets[1].name",
            ),
            (
                "[{name: office, members: [mail], resource: 'https://gw.example.com/mcp/expenses'}]",
                "fleets[0].resource",
            ),
        ] {
            match Config::from_yaml(&format!("{two}fleets: {fleets}\n")) {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field, "{fleets}"),
                other => panic!("{fleets}: expected an error at {field}, got {other:?}"),
            }
        }
        for bad in ["mail__box", "mail_"] {
            let yaml = BASE.replace(
                "upstreams:\n",
                &format!("upstreams:\n  - {{name: {bad}, url: 'http://127.0.0.1:8002/mcp'}}\n"),
            );
            let refused = Config::from_yaml(&format!(
                "{yaml}fleets: [{{name: office, members: [{bad}]}}]\n"
            ));
            assert!(
                matches!(&refused, Err(ConfigError::Invalid { field, reason })
                    if field == "fleets[0].members[0]" && reason.contains("two ways")),
                "{bad}: {refused:?}"
            );
        }
    }

    #[test]
    fn a_static_upstream_credential_is_read_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-live-123\n").unwrap();
        let with = |auth: &str| {
            Config::from_yaml(&BASE.replace(
                "url: 'http://127.0.0.1:8001/mcp'}",
                &format!("url: 'http://127.0.0.1:8001/mcp', downstream_auth: {auth}}}"),
            ))
        };
        let config = with(&format!(
            "{{header: {{name: X-Api-Key, value_from_file: '{}'}}}}",
            key.display()
        ))
        .unwrap();
        let up = config.upstream("expenses").unwrap();
        assert!(matches!(&up.auth, DownstreamAuth::Header(name, value)
            if name == "x-api-key" && value.expose() == "sk-live-123"));
        assert!(
            !format!("{config:?}").contains("sk-live"),
            "the secret stays out of Debug"
        );

        for (auth, field) in [
            (
                "{header: {name: Host, value_from_file: '/dev/null'}}",
                "upstreams[0].downstream_auth.header.name",
            ),
            (
                "{header: {name: 'bad name', value_from_file: '/dev/null'}}",
                "upstreams[0].downstream_auth.header.name",
            ),
            (
                "{header: {name: X-Api-Key}}",
                "upstreams[0].downstream_auth.header",
            ),
            (
                "{header: {name: X-Api-Key, value_from_env: PORTCULLIS_TEST_SURELY_UNSET}}",
                "upstreams[0].downstream_auth.header.value_from_env",
            ),
            (
                "{header: {name: X-Api-Key, value_from_file: '/dev/null'}}",
                "upstreams[0].downstream_auth.header",
            ),
        ] {
            let err = with(auth).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{field}:")), "{auth}: {err}");
        }
    }

    #[test]
    fn unknown_field_is_an_error_not_ignored() {
        let err = Config::from_yaml(&format!("{BASE}max_body: 10\n")).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_body`"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_field_path() {
        let yaml = BASE.replace("'http://127.0.0.1:8001/mcp'", "'ftp://x/mcp'");
        let err = Config::from_yaml(&yaml).unwrap_err();
        assert_eq!(
            err.to_string(),
            "upstreams[0].url: scheme must be http or https"
        );
    }

    #[test]
    fn body_limit_above_what_can_be_judged_is_refused() {
        let err = Config::from_yaml(&format!("{BASE}max_body_bytes: 1000000\n")).unwrap_err();
        assert!(err.to_string().starts_with("max_body_bytes:"), "{err}");
    }

    #[test]
    fn two_upstreams_with_one_resource_are_refused() {
        let yaml = format!(
            "{BASE}  - {{name: other, url: 'http://127.0.0.1:8002/mcp', resource: 'https://gw.example.com/mcp/expenses'}}\n"
        );
        let err = Config::from_yaml(&yaml).unwrap_err();
        assert!(
            err.to_string().starts_with("upstreams[1].resource:"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_upstream_names_are_refused() {
        let yaml = format!("{BASE}  - {{name: expenses, url: 'http://127.0.0.1:8002/mcp'}}\n");
        let err = Config::from_yaml(&yaml).unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
    }
}
