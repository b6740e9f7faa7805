//! `upstreams:`: each entry becomes an [`Upstream`] with its address resolved, its resource
//! checked to be its own, and its credential read.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use super::raw::{AuthName, RawDownstreamAuth, RawHeaderAuth, RawUpstream};
use super::{ConfigError, invalid, url, valid_name};
use crate::secret::{self, Source};
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
        let url = url::parse(&field("url"), &up.url)?;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| invalid(field("url"), format!("cannot resolve {}: {e}", url.host)))?
            .next()
            .ok_or_else(|| invalid(field("url"), format!("{} resolves to nothing", url.host)))?;
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
            require_dpop: up.require_dpop.unwrap_or(require_dpop),
            incremental_consent: up.incremental_consent,
        }));
    }
    Ok(upstreams)
}

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
