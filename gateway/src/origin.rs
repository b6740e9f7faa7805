//! DNS-rebinding protection: the `Host` and `Origin` a request may carry.
//!
//! A web page that rebinds its own name to the gateway's address can make a browser send
//! requests there, but the browser still says `Host: evil.example` and `Origin:
//! https://evil.example`. The gateway accepts only its own public host, loopback names (for
//! local clients), and configured extras; and `Origin`, when present (browsers), only from
//! configured origins, by default the public URL's own, or, on a loopback `Host`, from a
//! loopback origin (a local tool's page; a rebinding page's origin is never loopback).
//! Non-browser clients send no `Origin`.

/// Which `Host` and `Origin` values are accepted.
#[derive(Debug, Clone)]
pub(crate) struct HostPolicy {
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// Why a request's `Host` or `Origin` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// No `Host` header.
    #[error("the request has no Host header")]
    MissingHost,
    /// A `Host` the gateway does not serve.
    #[error("Host {0:?} is not served here")]
    ForeignHost(String),
    /// An `Origin` that is not allowed.
    #[error("Origin {0:?} is not allowed")]
    ForeignOrigin(String),
}

fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

fn is_loopback(authority: &str) -> bool {
    matches!(host_name(authority), "localhost" | "127.0.0.1" | "::1")
}

impl HostPolicy {
    /// Accepts `public_url`'s host and origin, loopback hosts, and the extras given.
    pub(crate) fn new(public_url: &str, extra_hosts: &[String], extra_origins: &[String]) -> Self {
        let origin = public_url.trim_end_matches('/');
        let origin = match origin.find("://").map(|i| i + 3) {
            Some(start) => {
                &origin[..origin[start..]
                    .find('/')
                    .map_or(origin.len(), |i| start + i)]
            }
            None => origin,
        };
        let authority = origin.split("://").nth(1).unwrap_or(origin);
        let mut hosts = vec![
            authority.to_ascii_lowercase(),
            host_name(authority).to_ascii_lowercase(),
        ];
        hosts.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        let mut origins = vec![origin.to_ascii_lowercase()];
        origins.extend(
            extra_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
        );
        Self { hosts, origins }
    }

    /// Checks a request's `Host` and `Origin`.
    pub(crate) fn check(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
    ) -> Result<(), OriginError> {
        let host = host
            .ok_or(OriginError::MissingHost)?
            .trim()
            .to_ascii_lowercase();
        let loopback = is_loopback(&host);
        if !loopback && !self.hosts.contains(&host) {
            return Err(OriginError::ForeignHost(host));
        }
        if let Some(origin) = origin {
            let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
            let local = loopback
                && ["http://", "https://"]
                    .iter()
                    .find_map(|scheme| origin.strip_prefix(scheme))
                    .is_some_and(is_loopback);
            if !local && !self.origins.contains(&origin) {
                return Err(OriginError::ForeignOrigin(origin));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HostPolicy {
        HostPolicy::new(
            "https://gw.example.com",
            &[],
            &["https://app.example.com".into()],
        )
    }

    #[test]
    fn a_rebinding_page_is_refused_by_host_and_by_origin() {
        let p = policy();
        assert_eq!(
            p.check(Some("evil.example.com"), Some("http://evil.example.com")),
            Err(OriginError::ForeignHost("evil.example.com".into()))
        );
        assert_eq!(
            p.check(Some("127.0.0.1:8080"), Some("http://evil.example.com")),
            Err(OriginError::ForeignOrigin("http://evil.example.com".into()))
        );
    }

    #[test]
    fn own_host_loopback_and_configured_origins_are_accepted() {
        let p = policy();
        for host in [
            "gw.example.com",
            "GW.example.com",
            "localhost:3000",
            "127.0.0.1:8080",
            "[::1]:9",
        ] {
            assert_eq!(p.check(Some(host), None), Ok(()), "{host}");
        }
        assert_eq!(
            p.check(Some("gw.example.com"), Some("https://gw.example.com")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("gw.example.com"), Some("https://app.example.com/")),
            Ok(())
        );
        assert_eq!(p.check(None, None), Err(OriginError::MissingHost));
    }

    #[test]
    fn a_loopback_origin_is_accepted_only_on_a_loopback_host() {
        let p = policy();
        assert_eq!(
            p.check(Some("127.0.0.1:8080"), Some("http://127.0.0.1:8080")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("localhost:8080"), Some("http://localhost:5173")),
            Ok(())
        );
        assert_eq!(
            p.check(Some("gw.example.com"), Some("http://localhost:5173")),
            Err(OriginError::ForeignOrigin("http://localhost:5173".into()))
        );
        // A look-alike is not loopback.
        assert_eq!(
            p.check(Some("127.0.0.1"), Some("http://127.0.0.1.evil.example")),
            Err(OriginError::ForeignOrigin(
                "http://127.0.0.1.evil.example".into()
            ))
        );
    }
}
