//! `@modelcontextprotocol/server-everything`, the MCP reference server, as a real upstream
//! behind the gateway: a server built with another SDK (TypeScript), with its own sessions,
//! SSE and resumability, to check the gateway against something it was not written next to.
//!
//! It runs in a child process on a loopback port (`examples/interop/loopback.cjs` keeps it
//! from listening on every interface) and is killed when dropped.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::stack::{Stack, StackOptions};

/// A running server-everything.
#[derive(Debug)]
pub struct Everything {
    child: tokio::process::Child,
    /// Its MCP endpoint.
    pub url: String,
}

impl Everything {
    /// Starts `entry` (the package's `dist/index.js`) with `node`, in streamable HTTP mode.
    pub async fn start(node: &str, entry: &Path) -> anyhow::Result<Self> {
        let port = crate::stack::free_port()?.port();
        let preload = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/loopback.cjs");
        let child = tokio::process::Command::new(node)
            .arg("--require")
            .arg(preload)
            .arg(entry)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", entry.display()))?;
        let everything = Self {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(everything);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("server-everything did not listen on port {port}")
    }

    /// Starts it as in [`Everything::start`], behind a whole stack as upstream `everything`
    /// (SQLite in `data_dir`), whose endpoint for it is `{gateway_url}/mcp/everything`.
    pub async fn behind_gateway(
        node: &str,
        entry: &Path,
        data_dir: &Path,
    ) -> anyhow::Result<(Self, Stack)> {
        let everything = Self::start(node, entry).await?;
        let options = StackOptions::with_upstream(data_dir, "everything", &everything.url);
        let stack = Stack::start(&options).await?;
        Ok((everything, stack))
    }

    /// Stops it.
    pub async fn stop(mut self) {
        // Already gone is fine.
        let _killed = self.child.kill().await;
    }
}
