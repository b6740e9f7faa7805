//! Fetching documents from URLs that someone else chose, without becoming their proxy (SSRF).
//!
//! A client ID metadata document lives at whatever URL a client names, so the issuer must not
//! let that URL reach what only the issuer can reach: cloud metadata services, the database,
//! the admin port. The rules (MCP security best practices §SSRF, CIMD draft §6):
//!
//! - `https` only; `http` only to a loopback address, and only when development mode allows it;
//! - no user info in the URL;
//! - every address the host resolves to must be public: no loopback (unless allowed), private,
//!   link-local (169.254.0.0/16, cloud metadata), shared (100.64/10), unspecified, multicast,
//!   documentation or benchmarking range, in IPv4, IPv6, or IPv4 inside IPv6;
//! - the connection goes to the address that was checked (no second lookup an attacker's DNS
//!   could answer differently);
//! - redirects are never followed; time and size are capped; no cookies or credentials.
//!
//! Addresses are parsed by the standard library and the `url` crate (WHATWG host parsing turns
//! `0x7f.1` and friends into `127.0.0.1` before any check).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The largest document read, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a fetch was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not a URL.
    #[error("not a valid URL")]
    InvalidUrl,
    /// A scheme other than https (or http to loopback in development).
    #[error("only https URLs may be fetched")]
    Scheme,
    /// User info in the URL.
    #[error("URLs with credentials are refused")]
    Credentials,
    /// The host resolves to an address the issuer must not reach.
    #[error("{0} is a non-public address")]
    ForbiddenAddress(IpAddr),
    /// DNS failed or returned nothing.
    #[error("cannot resolve the host: {0}")]
    Resolve(String),
    /// The server answered with a redirect, which is never followed.
    #[error("the server redirects (to {0:?}); redirects are not followed")]
    Redirect(String),
    /// A status other than 200.
    #[error("the server answered HTTP {0}")]
    Status(u16),
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// Connecting, TLS, or reading failed, or took too long.
    #[error("fetch failed: {0}")]
    Transport(String),
}

/// Whether `ip` may be fetched from. Loopback is allowed only with `allow_loopback`.
pub fn is_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_allowed(v4, allow_loopback);
            }
            if v6.is_loopback() {
                return allow_loopback;
            }
            let first = v6.segments()[0];
            let nat64 = v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            !(v6.is_unspecified()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00 // unique local fc00::/7
                || first & 0xffc0 == 0xfe80 // link-local fe80::/10
                || first & 0xffc0 == 0xfec0 // deprecated site-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
                || (nat64 && !v4_allowed(embedded_v4(v6), allow_loopback)))
        }
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Ipv4Addr {
    let s = v6.segments();
    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8)
}

fn v4_allowed(v4: Ipv4Addr, allow_loopback: bool) -> bool {
    if v4.is_loopback() {
        return allow_loopback;
    }
    let [a, b, ..] = v4.octets();
    !(v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space 100.64/10
        || (a == 198 && (b == 18 || b == 19)) // benchmarking 198.18/15
        || a >= 240)
}

/// Checks `url` and resolves its host to one allowed address.
pub async fn check(url: &url::Url, allow_loopback: bool) -> Result<SocketAddr, FetchError> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::Credentials);
    }
    let host = url.host().ok_or(FetchError::InvalidUrl)?;
    let port = url.port_or_known_default().ok_or(FetchError::InvalidUrl)?;
    let addresses: Vec<SocketAddr> = match host {
        url::Host::Ipv4(ip) => vec![SocketAddr::new(ip.into(), port)],
        url::Host::Ipv6(ip) => vec![SocketAddr::new(ip.into(), port)],
        url::Host::Domain(name) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| FetchError::Resolve(e.to_string()))?
            .collect(),
    };
    let first = *addresses
        .first()
        .ok_or_else(|| FetchError::Resolve("no addresses".into()))?;
    // Every answer must be allowed: a name with one public and one private address could
    // otherwise be steered to the private one.
    if let Some(bad) = addresses
        .iter()
        .find(|a| !is_allowed(a.ip(), allow_loopback))
    {
        return Err(FetchError::ForbiddenAddress(bad.ip()));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_loopback && first.ip().is_loopback() => {}
        _ => return Err(FetchError::Scheme),
    }
    Ok(first)
}

/// GETs `url` under the rules above and returns the body.
pub async fn get(url: &url::Url, allow_loopback: bool) -> Result<Vec<u8>, FetchError> {
    let address = check(url, allow_loopback).await?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .no_proxy();
    if let Some(url::Host::Domain(name)) = url.host() {
        builder = builder.resolve(name, address);
    }
    let client = builder
        .build()
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    let response = client
        .get(url.as_str())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Transport(e.to_string()))?;
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        return Err(FetchError::Redirect(location));
    }
    if status != reqwest::StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Transport(e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(text: &str) -> bool {
        is_allowed(text.parse().expect("an IP"), false)
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(!allowed(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(allowed(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn loopback_only_in_development() {
        assert!(is_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(is_allowed("::1".parse().unwrap(), true));
        assert!(!is_allowed("10.0.0.1".parse().unwrap(), true));
    }

    #[tokio::test]
    async fn hex_and_octal_spellings_of_loopback_are_caught() {
        for url in [
            "https://0x7f.1/doc",
            "https://2130706433/doc",
            "https://127.1/doc",
            "https://[::ffff:7f00:1]/doc",
        ] {
            let parsed = url::Url::parse(url).expect("WHATWG parses it");
            assert!(
                matches!(
                    check(&parsed, false).await,
                    Err(FetchError::ForbiddenAddress(_))
                ),
                "{url}"
            );
        }
    }

    #[tokio::test]
    async fn plain_http_is_refused_outside_development() {
        let url = url::Url::parse("http://127.0.0.1:9/doc").unwrap();
        assert!(matches!(
            check(&url, false).await,
            Err(FetchError::ForbiddenAddress(_))
        ));
        let url = url::Url::parse("http://93.184.216.34/doc").unwrap();
        assert!(matches!(check(&url, true).await, Err(FetchError::Scheme)));
        let url = url::Url::parse("https://user:pw@93.184.216.34/doc").unwrap();
        assert!(matches!(
            check(&url, false).await,
            Err(FetchError::Credentials)
        ));
    }
}
