//! The gateway's YAML configuration, validated at load into ready-to-use values.
//!
//! `raw` mirrors the file (unknown fields are errors, so a typo cannot silently drop a
//! setting); each section is validated in the module named for it (`upstream`, `fleet`,
//! `audit`, `revocation`, `sessions`, `shared_state`, `url`), and [`Config`] is what comes out, with URLs
//! parsed, addresses resolved, secrets read and defaults filled in. Every validation error
//! names the field path, e.g. `upstreams[1].url: scheme must be http or https`.
//!
//! A [`Config`] has two halves because a running gateway treats them differently:
//! [`Settings`] are wired into its services at start, while the [`RouteTable`] (upstreams,
//! fleets, accepted hosts and origins) is replaced on a reload (see `routes`). The gateway's
//! state keeps the settings and the live routes, never a second copy of the table.
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
//!   - name: memory                # a server that speaks stdio: started by the gateway
//!     command:
//!       program: /usr/bin/node
//!       args: [/opt/server-memory/dist/index.js]
//!       env: {MEMORY_FILE_PATH: /var/lib/memory.jsonl}
//!       inherit_env: [HOME]       # nothing else of the gateway's environment
//!       working_dir: /var/lib
//!       instances: pooled         # or: per_session
//!       limits: {memory_bytes: 1073741824, open_files: 256, cpu_seconds: 3600}
//! ```

mod approvals;
mod audit;
mod fleet;
mod raw;
mod revocation;
mod sessions;
mod shared_state;
mod upstream;
mod url;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::decision_log::AuditConfig;
use crate::fleet::Fleet;
use crate::secret::{self, Secret, Source};
use crate::upstream::{DownstreamAuth, Upstream};

pub use self::approvals::ApprovalsConfig;
pub use self::revocation::{Sources, StalenessMode};
pub use self::sessions::{SessionKey, SessionSettings};
pub use self::shared_state::{SharedMode, SharedState};

/// The largest `max_body_bytes`: every body is held whole while it is judged, so the bound is
/// on memory, not on what can be judged.
pub const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Where the admin token comes from when no file is named.
const ADMIN_TOKEN_ENV: &str = "PORTCULLIS_GATEWAY_ADMIN_TOKEN";

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

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// What is fixed while the gateway runs.
    pub settings: Settings,
    /// What a reload replaces.
    pub routes: RouteTable,
}

/// The settings wired into the gateway's services at start; a reload that changes them is
/// logged as needing a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
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
    /// The most bytes of large request bodies held at once.
    pub body_buffer_bytes: usize,
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
    pub admin_token: Option<Secret>,
    /// Expected `iss`.
    pub issuer: String,
    /// JWKS URL.
    pub jwks_url: String,
    /// Staleness policy.
    pub revocation_mode: StalenessMode,
    /// Strict-mode bound, seconds.
    pub max_staleness_seconds: i64,
    /// Where revocations are published.
    pub revocation_sources: Sources,
    /// Longest wait between reconnection attempts.
    pub revocation_retry_max: Duration,
    /// The decision audit log, if configured.
    pub audit: Option<AuditConfig>,
    /// Where calls that need a person's approval are asked about, if decisions are shipped.
    pub approvals: Option<ApprovalsConfig>,
    /// The tool pins file, if pinning is on.
    pub pins_file: Option<PathBuf>,
    /// The Redis the replicas share, if configured; without it, rate caps are per replica.
    pub shared_state: Option<SharedState>,
    /// Session keys and lifetimes.
    pub sessions: SessionSettings,
    /// Bearer tokens are refused at fleets (upstreams carry their own setting).
    pub require_dpop: bool,
    /// DPoP proofs must carry a nonce the gateway issued.
    pub dpop_nonces: bool,
    /// The file this was read from, watched for changes by a running gateway.
    pub source: Option<PathBuf>,
}

/// Where requests may go: the part of the configuration a reload replaces.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteTable {
    /// Upstreams (shared with the requests and live work that use them, across reloads).
    pub upstreams: Vec<Arc<Upstream>>,
    /// Fleets over those upstreams.
    pub fleets: Vec<Arc<Fleet>>,
    /// Extra accepted `Host` values.
    pub allowed_hosts: Vec<String>,
    /// Extra accepted `Origin` values.
    pub allowed_origins: Vec<String>,
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
        config.settings.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let raw: raw::RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        Self::validate(raw)
    }

    /// Validates a parsed file, section by section.
    fn validate(raw: raw::RawConfig) -> Result<Self, ConfigError> {
        let public_url = raw.public_url.trim_end_matches('/').to_owned();
        url::parse("public_url", &public_url)?;
        if raw.max_body_bytes == 0 || raw.max_body_bytes > MAX_BODY_LIMIT {
            return Err(invalid(
                "max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT}"),
            ));
        }
        // A body is held with the message parsed from it: twice its size.
        if raw.body_buffer_bytes < 2 * raw.max_body_bytes {
            return Err(invalid(
                "body_buffer_bytes",
                format!(
                    "must be at least twice max_body_bytes ({}), or the largest body could \
                     never be held with its parsed message",
                    raw.max_body_bytes
                ),
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
        url::parse("issuer.url", &issuer_url)?;
        let jwks_url = raw
            .issuer
            .jwks_url
            .unwrap_or_else(|| format!("{issuer_url}/.well-known/jwks.json"));
        url::parse("issuer.jwks_url", &jwks_url)?;
        let revocation = revocation(raw.revocation, &issuer_url)?;
        let upstreams = upstream::upstreams(raw.upstreams, &public_url, raw.require_dpop)?;
        let fleets = fleet::fleets(raw.fleets, &upstreams, &public_url)?;
        let admin_token = admin_token(raw.admin_token_file.as_deref())?;
        let audit = raw
            .audit
            .map(|audit| audit::audit(audit, &issuer_url))
            .transpose()?;
        let approvals = approvals::approvals(audit.as_ref(), &issuer_url);
        if approvals.is_none()
            && let Some(i) = upstreams
                .iter()
                .position(|u| u.auth == DownstreamAuth::OAuth)
        {
            return Err(invalid(
                format!("upstreams[{i}].downstream_auth"),
                "oauth needs the issuer's gateway token: configure audit shipping (audit.ship_to)",
            ));
        }
        let shared_state = raw
            .shared_state
            .map(shared_state::shared_state)
            .transpose()?;
        let sessions = raw
            .sessions
            .map(sessions::sessions)
            .transpose()?
            .unwrap_or_default();
        Ok(Config {
            settings: Settings {
                audit,
                approvals,
                shared_state,
                sessions,
                require_dpop: raw.require_dpop,
                dpop_nonces: raw.dpop_nonces,
                pins_file: raw.pins_file,
                source: None,
                admin_token,
                listen: socket_addr("listen", &raw.listen)?,
                admin_listen: socket_addr("admin_listen", &raw.admin_listen)?,
                public_url,
                threads,
                max_body_bytes: raw.max_body_bytes,
                body_buffer_bytes: raw.body_buffer_bytes,
                leeway_seconds: raw.leeway_seconds,
                downstream_token_ttl_seconds: raw.downstream_token_ttl_seconds,
                signing_key_file: raw.signing_key_file,
                grace_period_seconds: raw.grace_period_seconds,
                token_cache_size: raw.token_cache_size,
                issuer: raw.issuer.issuer.unwrap_or_else(|| issuer_url.clone()),
                jwks_url,
                revocation_mode: revocation.mode,
                max_staleness_seconds: revocation.max_staleness_seconds,
                revocation_sources: revocation.sources,
                revocation_retry_max: revocation.retry_max,
            },
            routes: RouteTable {
                upstreams,
                fleets,
                allowed_hosts: raw.allowed_hosts,
                allowed_origins: raw.allowed_origins,
            },
        })
    }

    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.routes.upstreams.iter().find(|u| u.name == name)
    }
}

/// The `revocation:` section, validated.
struct RevocationSettings {
    mode: StalenessMode,
    max_staleness_seconds: i64,
    sources: Sources,
    retry_max: Duration,
}

fn revocation(
    raw: raw::RawRevocation,
    issuer_url: &str,
) -> Result<RevocationSettings, ConfigError> {
    if !(1..=3600).contains(&raw.max_staleness_seconds) {
        return Err(invalid(
            "revocation.max_staleness_seconds",
            "must be 1 to 3600",
        ));
    }
    if !(1..=300).contains(&raw.retry_max_seconds) {
        return Err(invalid("revocation.retry_max_seconds", "must be 1 to 300"));
    }
    let stream_url = raw
        .stream_url
        .unwrap_or_else(|| format!("{issuer_url}/revocations/stream"));
    url::parse("revocation.stream_url", &stream_url)?;
    let feed_url = raw
        .feed_url
        .unwrap_or_else(|| format!("{issuer_url}/.well-known/revoked"));
    url::parse("revocation.feed_url", &feed_url)?;
    Ok(RevocationSettings {
        mode: raw.mode,
        max_staleness_seconds: raw.max_staleness_seconds,
        sources: Sources {
            stream_url,
            feed_url,
        },
        retry_max: Duration::from_secs(raw.retry_max_seconds),
    })
}

/// The admin token from its file, or else its environment variable; none disables the
/// controls.
fn admin_token(file: Option<&Path>) -> Result<Option<Secret>, ConfigError> {
    let token = match file {
        Some(path) => Some(
            secret::read(Source::File(path))
                .map_err(|e| invalid("admin_token_file", e.to_string()))?,
        ),
        None => secret::read(Source::Env(ADMIN_TOKEN_ENV)).ok(),
    };
    if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        return Err(invalid(
            "admin_token_file",
            "the admin token must be at least 16 characters",
        ));
    }
    Ok(token)
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
        assert_eq!(
            c.settings.jwks_url,
            "http://127.0.0.1:9000/.well-known/jwks.json"
        );
        assert_eq!(c.settings.issuer, "http://127.0.0.1:9000");
        assert_eq!(c.settings.max_body_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn person_tokens_need_the_issuers_gateway_token_and_no_fleet() {
        let oauth = "  - {name: notes, url: 'http://127.0.0.1:8002/mcp', downstream_auth: oauth}\n";
        let err = Config::from_yaml(&format!("{BASE}{oauth}")).unwrap_err();
        assert!(
            err.to_string().starts_with("upstreams[1].downstream_auth:"),
            "{err}"
        );
        let dir = tempfile::TempDir::new().unwrap();
        let token = dir.path().join("ingest-token");
        std::fs::write(&token, "a-gateway-token-of-the-issuer").unwrap();
        let audit = format!(
            "audit: {{dir: '{}', ingest_token_file: '{}'}}\n",
            dir.path().display(),
            token.display()
        );
        let c = Config::from_yaml(&format!("{BASE}{oauth}{audit}")).unwrap();
        assert_eq!(c.upstream("notes").unwrap().auth, DownstreamAuth::OAuth);
        let fleet = "fleets:\n  - {name: all, members: [expenses, notes]}\n";
        let err = Config::from_yaml(&format!("{BASE}{oauth}{audit}{fleet}")).unwrap_err();
        assert!(
            err.to_string().starts_with("fleets[0].members[1]:"),
            "{err}"
        );
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
        let fleet = &config.routes.fleets[0];
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
    fn a_stdio_upstream_is_a_command_and_nothing_else() {
        let stdio =
            "  - {name: tool, command: {program: /bin/cat, env: {A: b}, inherit_env: [PATH]}}\n";
        let c = Config::from_yaml(&format!("{BASE}{stdio}")).unwrap();
        let up = c.upstream("tool").unwrap();
        assert!(up.addr.ip().is_loopback(), "served by its loopback bridge");
        assert!(matches!(&up.auth, DownstreamAuth::Header(name, value)
            if name == http::header::AUTHORIZATION && value.expose().starts_with("Bearer ")));
        let again = Config::from_yaml(&format!("{BASE}{stdio}")).unwrap();
        assert_eq!(
            again.upstream("tool").unwrap().addr,
            up.addr,
            "an unchanged command keeps its bridge"
        );
        for (yaml, field) in [
            (
                "{name: t, url: 'http://127.0.0.1:1/mcp', command: {program: x}}",
                "upstreams[1].url",
            ),
            ("{name: t}", "upstreams[1].url"),
            (
                "{name: t, command: {program: x}, downstream_auth: none}",
                "upstreams[1].command",
            ),
            (
                "{name: t, command: {program: ' '}}",
                "upstreams[1].command.program",
            ),
            (
                "{name: t, command: {program: x, working_dir: /nonexistent}}",
                "upstreams[1].command.working_dir",
            ),
            (
                "{name: t, command: {program: x, env: {'A=B': c}}}",
                "upstreams[1].command.env",
            ),
            (
                "{name: t, command: {program: x, limits: {open_files: 0}}}",
                "upstreams[1].command.limits",
            ),
        ] {
            let err = Config::from_yaml(&format!("{BASE}  - {yaml}\n")).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("{field}:")),
                "{yaml}: {err}"
            );
        }
    }

    #[test]
    fn body_limits_are_bounded() {
        let c = Config::from_yaml(BASE).unwrap();
        assert_eq!(c.settings.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(c.settings.body_buffer_bytes, 256 * 1024 * 1024);
        let err = Config::from_yaml(&format!("{BASE}max_body_bytes: 100000000\n")).unwrap_err();
        assert!(err.to_string().starts_with("max_body_bytes:"), "{err}");
        let err = Config::from_yaml(&format!(
            "{BASE}max_body_bytes: 8000000\nbody_buffer_bytes: 4000000\n"
        ))
        .unwrap_err();
        assert!(err.to_string().starts_with("body_buffer_bytes:"), "{err}");
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
