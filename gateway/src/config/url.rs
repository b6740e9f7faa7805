//! The URLs a configuration names (upstreams, the issuer, its feeds), split once at load into
//! the parts the proxy uses, and refused when they carry what a proxy target must not: user
//! info, a query, a fragment, a scheme other than http(s).

use super::{ConfigError, invalid};

/// An `http(s)` URL in parts.
#[derive(Debug)]
pub(super) struct ParsedUrl {
    pub(super) tls: bool,
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) authority: String,
    pub(super) path: String,
}

/// Parses `text`, naming `field` in the error.
pub(super) fn parse(field: &str, text: &str) -> Result<ParsedUrl, ConfigError> {
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
