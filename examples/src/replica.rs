//! More gateway replicas beside a [`Stack`]'s: the same configuration, the same public URL
//! and downstream signing key, ports of their own, as replicas behind one Service are.
//!
//! The stack's gateway must take its keys from files ([`replica_keys_yaml`]): the downstream
//! signing key, or the upstream would refuse the tokens a replica mints, and the session keys,
//! or a replica would not know the sessions another opened.

use std::path::Path;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_gateway::RunningGateway;
use portcullis_gateway::config::Config;

use crate::stack::{Stack, free_port, wait_ready};

/// The `signing_key_file:` and `sessions:` lines for a stack whose gateway has replicas: a
/// new signing seed and session key, written to files in `dir`.
pub fn replica_keys_yaml(dir: &Path) -> anyhow::Result<String> {
    let write_key = |name: &str| -> anyhow::Result<String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
        let file = dir.join(name);
        std::fs::write(&file, URL_SAFE_NO_PAD.encode(key))?;
        Ok(file.display().to_string())
    };
    Ok(format!(
        "signing_key_file: '{}'\nsessions: {{keys_file: '{}'}}\n",
        write_key("gateway-signing-key")?,
        write_key("gateway-session-keys")?
    ))
}

/// A gateway replica on a thread of this process; dropping it stops it.
#[derive(Debug)]
pub struct Replica {
    /// Its proxy base URL.
    pub url: String,
    /// Its admin base URL (`/metrics`, `/readyz`).
    pub admin_url: String,
    /// Its endpoint for the expenses server (tokens still name the stack's resource).
    pub resource: String,
    _gateway: RunningGateway,
}

impl Stack {
    /// Starts another replica of the stack's gateway, configured alike but for its ports and
    /// with `extra_yaml` appended (its top-level keys replacing the stack's), and waits until
    /// it is ready.
    pub async fn start_replica(&self, extra_yaml: &str) -> anyhow::Result<Replica> {
        let (listen, admin) = (free_port()?, free_port()?);
        // A top-level key `extra_yaml` sets replaces the stack's line for it (e.g. `audit:`,
        // since replicas must not share a decision log).
        let overridden = |line: &str| {
            line.split_once(':').is_some_and(|(key, _)| {
                !key.starts_with(' ')
                    && extra_yaml
                        .lines()
                        .any(|extra| extra.starts_with(&format!("{key}:")))
            })
        };
        let yaml = std::fs::read_to_string(&self.gateway_config)?
            .lines()
            .filter(|line| !overridden(line))
            .map(|line| match line {
                l if l.starts_with("listen:") => format!("listen: {listen}\n"),
                l if l.starts_with("admin_listen:") => format!("admin_listen: {admin}\n"),
                l => format!("{l}\n"),
            })
            .collect::<String>()
            + extra_yaml;
        let config = Config::from_yaml(&yaml).context("the replica's configuration")?;
        let gateway = tokio::task::spawn_blocking(move || portcullis_gateway::spawn(config))
            .await?
            .context("starting a replica")?;
        let url = format!("http://{listen}");
        let admin_url = format!("http://{admin}");
        wait_ready(&admin_url, &url).await?;
        Ok(Replica {
            resource: format!("{url}/mcp/expenses"),
            url,
            admin_url,
            _gateway: gateway,
        })
    }
}
