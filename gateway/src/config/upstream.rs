//! `upstreams:`: each entry becomes an [`Upstream`] with its address resolved, its resource
//! checked to be its own, and its credential read.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{
    AuthName, RawCommand, RawDownstreamAuth, RawHeaderAuth, RawInstances, RawUpstream,
};
use super::{ConfigError, invalid, url, valid_name};
use crate::secret::{self, Source};
use crate::stdio::{self, BridgeHandle, Instances, Limits, StdioCommand};
use crate::upstream::{DownstreamAuth, Upstream};

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

/// Validates every upstream, in order; names and resources must be unique.
pub(super) fn upstreams(
    raw: Vec<RawUpstream>,
    public_url: &str,
    require_dpop: bool,
) -> Result<Vec<Arc<Upstream>>, ConfigError> {
    if raw.is_empty() {
        return Err(invalid("upstreams", "name at least one upstream"));
    }
    let mut upstreams: Vec<Arc<Upstream>> = Vec::with_capacity(raw.len());
    for (i, up) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("upstreams[{i}].{f}");
        if !valid_name(&up.name) {
            return Err(invalid(
                field("name"),
                "use 1-64 characters of [A-Za-z0-9_.-]",
            ));
        }
        if upstreams.iter().any(|u| u.name == up.name) {
            return Err(invalid(
                field("name"),
                format!("{:?} is used twice", up.name),
            ));
        }
        let target = match (up.url, up.command) {
            (Some(url), None) => {
                let auth = downstream_auth(
                    &field("downstream_auth"),
                    up.downstream_auth.unwrap_or_default(),
                )?;
                Target::http(&field("url"), url, up.audience, auth)?
            }
            (None, Some(command)) => {
                if up.downstream_auth.is_some() || up.audience.is_some() {
                    return Err(invalid(
                        field("command"),
                        "a stdio upstream is reached through the gateway's own loopback bridge: \
                         downstream_auth and audience do not apply",
                    ));
                }
                let command = stdio_command(&field("command"), command)?;
                Target::stdio(&field("command"), &up.name, &command)?
            }
            _ => {
                return Err(invalid(
                    field("url"),
                    "give exactly one of url (an HTTP server) and command (a stdio server)",
                ));
            }
        };
        let resource = up
            .resource
            .unwrap_or_else(|| format!("{public_url}/mcp/{}", up.name));
        // A token is bound to one resource; two upstreams sharing one would accept each
        // other's tokens.
        if upstreams.iter().any(|u| u.resource == resource) {
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
        let Target {
            url,
            audience,
            addr,
            auth,
            stdio,
        } = target;
        upstreams.push(Arc::new(Upstream {
            resource,
            audience,
            name: up.name,
            addr,
            tls: url.tls,
            host: url.host,
            authority: url.authority,
            path: url.path,
            auth,
            stdio,
            connect_timeout: Duration::from_secs(up.connect_timeout_seconds),
            idle_timeout: Duration::from_secs(up.idle_timeout_seconds),
            require_dpop: up.require_dpop.unwrap_or(require_dpop),
            incremental_consent: up.incremental_consent,
        }));
    }
    Ok(upstreams)
}

/// Where an upstream is and how the gateway authenticates to it.
struct Target {
    url: url::ParsedUrl,
    audience: String,
    addr: std::net::SocketAddr,
    auth: DownstreamAuth,
    stdio: Option<BridgeHandle>,
}

impl Target {
    /// An HTTP server at `url`.
    fn http(
        field: &str,
        url: String,
        audience: Option<String>,
        auth: DownstreamAuth,
    ) -> Result<Self, ConfigError> {
        let parsed = url::parse(field, &url)?;
        let addr = (parsed.host.as_str(), parsed.port)
            .to_socket_addrs()
            .map_err(|e| invalid(field, format!("cannot resolve {}: {e}", parsed.host)))?
            .next()
            .ok_or_else(|| invalid(field, format!("{} resolves to nothing", parsed.host)))?;
        Ok(Self {
            url: parsed,
            audience: audience.unwrap_or(url),
            addr,
            auth,
            stdio: None,
        })
    }

    /// A stdio server, behind its bridge: the running one if the command is unchanged.
    fn stdio(field: &str, name: &str, command: &StdioCommand) -> Result<Self, ConfigError> {
        let bridge = BridgeHandle::for_upstream(name, command, super::MAX_BODY_LIMIT)
            .map_err(|e| invalid(field, e.to_string()))?;
        let url = format!("http://{}{}", bridge.addr(), stdio::BRIDGE_PATH);
        Ok(Self {
            url: url::parse(field, &url)?,
            audience: url,
            addr: bridge.addr(),
            auth: DownstreamAuth::Header(http::header::AUTHORIZATION, bridge.credential().clone()),
            stdio: Some(bridge),
        })
    }
}

/// Validates `command:`; the inherited variables are read from the gateway's environment now.
fn stdio_command(field: &str, raw: RawCommand) -> Result<StdioCommand, ConfigError> {
    if raw.program.trim().is_empty() {
        return Err(invalid(
            format!("{field}.program"),
            "name the program to start",
        ));
    }
    let mut env = raw.env;
    for name in &raw.inherit_env {
        if let Ok(value) = std::env::var(name) {
            env.insert(name.clone(), value);
        }
    }
    if let Some(bad) = env
        .iter()
        .find(|(k, v)| k.is_empty() || k.contains(['=', '\0']) || v.contains('\0'))
    {
        return Err(invalid(
            format!("{field}.env"),
            format!("{:?} is not a valid environment variable", bad.0),
        ));
    }
    if let Some(dir) = &raw.working_dir
        && !dir.is_dir()
    {
        return Err(invalid(
            format!("{field}.working_dir"),
            format!("{} is not a directory", dir.display()),
        ));
    }
    let limits = raw.limits;
    if [limits.memory_bytes, limits.open_files, limits.cpu_seconds].contains(&Some(0)) {
        return Err(invalid(
            format!("{field}.limits"),
            "a limit must be positive",
        ));
    }
    Ok(StdioCommand {
        program: raw.program,
        args: raw.args,
        env,
        working_dir: raw.working_dir,
        instances: match raw.instances {
            RawInstances::Pooled => Instances::Pooled,
            RawInstances::PerSession => Instances::PerSession,
        },
        limits: Limits {
            memory_bytes: limits.memory_bytes,
            open_files: limits.open_files,
            cpu_seconds: limits.cpu_seconds,
        },
    })
}

fn downstream_auth(field: &str, raw: RawDownstreamAuth) -> Result<DownstreamAuth, ConfigError> {
    let RawHeaderAuth {
        name,
        value_from_env,
        value_from_file,
    } = match raw {
        RawDownstreamAuth::Named(AuthName::Mint) => return Ok(DownstreamAuth::Mint),
        RawDownstreamAuth::Named(AuthName::None) => return Ok(DownstreamAuth::None),
        RawDownstreamAuth::Named(AuthName::OAuth) => return Ok(DownstreamAuth::OAuth),
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
    let (source, which) = match (&value_from_env, &value_from_file) {
        (Some(var), None) => (Source::Env(var), "value_from_env"),
        (None, Some(path)) => (Source::File(path), "value_from_file"),
        _ => {
            return Err(invalid(
                field,
                "give exactly one of value_from_env and value_from_file",
            ));
        }
    };
    let value =
        secret::read(source).map_err(|e| invalid(format!("{field}.{which}"), e.to_string()))?;
    if value.expose().is_empty() || http::HeaderValue::from_str(value.expose()).is_err() {
        return Err(invalid(
            field,
            "the value is empty or not a valid header value",
        ));
    }
    Ok(DownstreamAuth::Header(header, value))
}
