//! An upstream with an authorization server of its own, from the registries: panva's
//! `oidc-provider` (npm) as the authorization server (`interop/oauth_as.mjs`) and a FastMCP
//! (PyPI) MCP server that takes only its JWTs (`interop/oauth_mcp_server.py`), each in a child
//! process on a loopback port, killed when dropped. [`OAuthUpstream::sign_in_and_consent`]
//! is a person at that server's own (development) sign-in and consent pages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::stack::free_port;

/// Where the third-party parts are installed (`scripts/test.sh` installs them).
#[derive(Debug, Clone)]
pub struct Installed {
    /// Node.js.
    pub node: String,
    /// `oidc-provider`'s `lib/index.js`.
    pub oidc_provider: String,
    /// The Python of the venv that has `fastmcp`.
    pub python: PathBuf,
}

/// The authorization server and the MCP server, running.
#[derive(Debug)]
pub struct OAuthUpstream {
    _server: tokio::process::Child,
    _authorization_server: tokio::process::Child,
    /// The authorization server's issuer identifier.
    pub issuer: String,
    /// The MCP endpoint (also its resource identifier).
    pub url: String,
}

/// Starts `command` and waits for its `listening` line.
async fn start(
    mut command: tokio::process::Command,
    what: &str,
) -> anyhow::Result<tokio::process::Child> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if line.starts_with("listening ") {
                return anyhow::Ok(());
            }
        }
        bail!("{what} exited before it listened")
    });
    ready
        .await
        .with_context(|| format!("{what} did not start in time"))??;
    // Whatever it writes later must find a reader: a closed pipe would end it (EPIPE).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

impl OAuthUpstream {
    /// Starts both; the server's access tokens last `access_ttl` seconds.
    pub async fn start(installed: &Installed, access_ttl: u64) -> anyhow::Result<Self> {
        let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop");
        let (as_port, mcp_port) = (free_port()?.port(), free_port()?.port());
        let issuer = format!("http://127.0.0.1:{as_port}");
        let url = format!("http://127.0.0.1:{mcp_port}/mcp");
        let mut authorization = tokio::process::Command::new(&installed.node);
        authorization
            .arg(interop.join("oauth_as.mjs"))
            .env("PORT", as_port.to_string())
            .env("ISSUER_URL", &issuer)
            .env("OIDC_PROVIDER", &installed.oidc_provider)
            .env("RESOURCE", &url)
            .env("ACCESS_TTL", access_ttl.to_string());
        let authorization_server = start(authorization, "the authorization server").await?;
        let mut mcp = tokio::process::Command::new(&installed.python);
        mcp.arg(interop.join("oauth_mcp_server.py"))
            .env("PORT", mcp_port.to_string())
            .env("AS_URL", &issuer)
            .env("RESOURCE", &url);
        let server = start(mcp, "the MCP server").await?;
        Ok(Self {
            _server: server,
            _authorization_server: authorization_server,
            issuer,
            url,
        })
    }

    /// A person at the server's own pages: from `authorize_url` (where the issuer sent them),
    /// signs in as `login` and consents; returns where the server sends them back (the
    /// issuer's callback, with the code).
    pub async fn sign_in_and_consent(
        &self,
        authorize_url: &str,
        login: &str,
    ) -> anyhow::Result<String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut next = authorize_url.to_owned();
        // auth → sign-in page → auth → consent page → auth → back to the client.
        for _ in 0..10 {
            if !next.starts_with(&self.issuer) {
                return Ok(next);
            }
            let jar = |cookies: &[(String, String)]| {
                cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let mut response = http
                .get(&next)
                .header(header::COOKIE, jar(&cookies))
                .send()
                .await?;
            keep_cookies(&mut cookies, &response);
            if response.status().is_success() {
                // A page with a form: sign in, or consent.
                let page = response.text().await?;
                let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
                    vec![("prompt", "login"), ("login", login), ("password", "any")]
                } else {
                    vec![("prompt", "consent")]
                };
                response = http
                    .post(&next)
                    .header(header::COOKIE, jar(&cookies))
                    .form(&form)
                    .send()
                    .await?;
                keep_cookies(&mut cookies, &response);
            }
            if !response.status().is_redirection() {
                bail!("the authorization server answered {}", response.status());
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .context("a redirect without a Location")?;
            next = if location.starts_with('/') {
                format!("{}{location}", self.issuer)
            } else {
                location.to_owned()
            };
        }
        bail!("the authorization server kept redirecting")
    }
}

fn keep_cookies(cookies: &mut Vec<(String, String)>, response: &reqwest::Response) {
    for value in response.headers().get_all(header::SET_COOKIE) {
        let Some((name, value)) = value
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .and_then(|kv| kv.split_once('='))
        else {
            continue;
        };
        cookies.retain(|(k, _)| k != name);
        cookies.push((name.to_owned(), value.to_owned()));
    }
}
