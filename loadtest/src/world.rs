//! What every scenario starts from: the whole stack in this process, an agent with a grant,
//! and (for A/B runs) a second expenses server without token checks to call directly.
//!
//! The stack is the one the demo and the end-to-end tests run (`portcullis_examples::stack`):
//! issuer on SQLite in a temporary directory, expenses MCP server, gateway, each on its own
//! 127.0.0.1 port. Everything therefore shares the machine's cores with the load generator,
//! as any setup on a two-core machine would.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use portcullis_examples::agent::{ClientCredentials, DpopKey, IssuerClient};
use portcullis_examples::expenses::{self, ExpensesConfig, ExpensesState};
use portcullis_examples::replica::{Replica, replica_keys_yaml};
use portcullis_examples::stack::{Stack, StackOptions};
use portcullis_policy::RevocationKind;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const USER: &str = "alice";
const AGENT: &str = "loadtest-agent";
/// The admin API answers in milliseconds; a revocation call stuck longer is a failed run.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every tool of the expenses server, `submit_expense` capped at 500, one re-delegation: the
/// gateway runs the whole authorization path (patterns and a limit) on each call.
/// With `rate`, a cap no run reaches, so that every call also goes through the rate step.
fn grant_details(rate: bool) -> Value {
    let mut details = json!([{
        "type": "mcp_tools",
        "tools": ["expenses/*"],
        "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500}],
        "max_depth": 1
    }]);
    if rate {
        details[0]["rate"] = json!({"per_hour": 1_000_000_000});
    }
    details
}

/// Refuses any URL that is not on 127.0.0.1: this tool only ever loads its own machine.
fn ensure_loopback(url: &str) -> anyhow::Result<()> {
    ensure!(
        url.starts_with("http://127.0.0.1:"),
        "refusing to send load to {url}: only 127.0.0.1 is a target"
    );
    Ok(())
}

/// The stack with an agent and its grant.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    pub(crate) grant_id: String,
    direct: Option<DirectServer>,
    /// A bare Pingora proxy in front of the direct server.
    passthrough: Option<crate::passthrough::PassthroughProxy>,
    /// A replica of the stack's gateway counting rate caps in Redis.
    redis_replica: Option<Replica>,
    /// Declared last so it is dropped after the stack that keeps its database there.
    _data: tempfile::TempDir,
}

/// An expenses server that checks no token, for the baseline of A/B runs: the stack's own
/// server demands the gateway's downstream tokens, whose key never leaves the gateway.
#[derive(Debug)]
struct DirectServer {
    url: String,
    addr: std::net::SocketAddr,
    state: ExpensesState,
    task: JoinHandle<()>,
}

impl Drop for DirectServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_direct_server() -> anyhow::Result<DirectServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}/mcp");
    let state = ExpensesState::default();
    let served = state.clone();
    let task = tokio::spawn(async move {
        let config = ExpensesConfig { auth: None };
        if let Err(error) = expenses::serve(listener, config, served).await {
            eprintln!("the direct expenses server failed: {error}");
        }
    });
    Ok(DirectServer {
        url,
        addr,
        state,
        task,
    })
}

impl World {
    /// Starts the stack (and the direct server when `with_direct`), registers the agent and
    /// records its grant.
    pub(crate) async fn start(with_direct: bool) -> anyhow::Result<Self> {
        Self::start_with(with_direct, None, None).await
    }

    /// As [`World::start`], with the gateway run from `gateway_binary` in a process of its own
    /// when given, and with `redis_url` a replica of it that counts rate caps in that Redis
    /// (the grant then has a cap, so that both gateways run the rate step).
    pub(crate) async fn start_with(
        with_direct: bool,
        gateway_binary: Option<std::path::PathBuf>,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        let data = tempfile::TempDir::new()?;
        eprintln!("starting the stack (issuer on SQLite, expenses server, gateway) on 127.0.0.1");
        let gateway_extra_yaml = match redis_url {
            Some(_) => replica_keys_yaml(data.path())?,
            None => String::new(),
        };
        let stack = Stack::start(&StackOptions {
            gateway_binary,
            gateway_extra_yaml,
            ..StackOptions::sqlite(data.path())
        })
        .await
        .context("starting the stack")?;
        let redis_replica = match redis_url {
            Some(url) => {
                let prefix = &portcullis_examples::random_secret()[..16];
                let shared = format!(
                    "shared_state: {{redis_url: '{url}', mode: strict, key_prefix: \
                     'portcullis-bench:{prefix}:'}}\n"
                );
                Some(stack.start_replica(&shared).await?)
            }
            None => None,
        };
        let direct = match with_direct {
            true => Some(start_direct_server().await?),
            false => None,
        };
        let passthrough = match &direct {
            Some(direct) => Some(crate::passthrough::PassthroughProxy::start(
                portcullis_examples::stack::free_port()?,
                direct.addr,
            )?),
            None => None,
        };
        let direct_url = direct.as_ref().map(|d| &d.url);
        let passthrough_url = passthrough.as_ref().map(|p| &p.url);
        let replica_url = redis_replica.as_ref().map(|r| &r.resource);
        for url in [&stack.issuer_url, &stack.resource]
            .into_iter()
            .chain(direct_url)
            .chain(passthrough_url)
            .chain(replica_url)
        {
            ensure_loopback(url)?;
        }
        let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
        let agent = issuer.register_agent(AGENT, "Load test agent").await?;
        let grant_id = issuer
            .grant(
                USER,
                AGENT,
                &stack.resource,
                grant_details(redis_url.is_some()),
            )
            .await?;
        Ok(Self {
            stack,
            issuer,
            agent,
            grant_id,
            direct,
            passthrough,
            redis_replica,
            _data: data,
        })
    }

    /// The gateway's endpoint for the expenses server.
    pub(crate) fn gateway_endpoint(&self) -> &str {
        &self.stack.resource
    }

    /// The Redis-counting replica's endpoint for the expenses server (started with a Redis).
    pub(crate) fn gateway_redis_endpoint(&self) -> anyhow::Result<&str> {
        let replica = self
            .redis_replica
            .as_ref()
            .context("no gateway replica with Redis was started (--redis-url)")?;
        Ok(&replica.resource)
    }

    /// The direct server's endpoint (started with `with_direct`).
    pub(crate) fn direct_endpoint(&self) -> anyhow::Result<&str> {
        let direct = self
            .direct
            .as_ref()
            .context("no direct server was started")?;
        Ok(&direct.url)
    }

    /// Makes both expenses servers list `count` generated tools more, in sessions opened from
    /// now on.
    pub(crate) fn set_catalog(&self, count: usize) {
        self.stack.expenses.set_catalog(count);
        if let Some(direct) = &self.direct {
            direct.state.set_catalog(count);
        }
    }

    /// The passthrough proxy's endpoint (started with `with_direct`).
    pub(crate) fn passthrough_endpoint(&self) -> anyhow::Result<&str> {
        let proxy = self
            .passthrough
            .as_ref()
            .context("no passthrough proxy was started")?;
        Ok(&proxy.url)
    }

    /// A fresh delegation token for the gateway (its own `jti`, five minutes of life): the
    /// user's subject token for the grant exchanged by the agent, as an agent would do it.
    pub(crate) async fn delegation_token(&self) -> anyhow::Result<String> {
        let subject = self.issuer.subject_token(&self.grant_id).await?;
        let actor = self.issuer.client_token(&self.agent).await?;
        Ok(self
            .issuer
            .exchange(&self.agent, &subject, &actor, &self.stack.resource, None)
            .await??)
    }

    /// As [`delegation_token`](Self::delegation_token), bound to `key` (DPoP): the agent's
    /// client token is obtained with a proof, and the exchange binds to its key.
    pub(crate) async fn bound_delegation_token(&self, key: &DpopKey) -> anyhow::Result<String> {
        let subject = self.issuer.subject_token(&self.grant_id).await?;
        let client = key.client_token(&self.issuer, &self.agent).await??;
        let actor = client["access_token"].as_str().context("no access_token")?;
        Ok(self
            .issuer
            .exchange(&self.agent, &subject, actor, &self.stack.resource, None)
            .await??)
    }

    /// Revokes the grant through the issuer's admin API; returns the revocation's sequence
    /// number (the gateway names it in `data.revocation` of its `-31007` errors).
    pub(crate) async fn revoke_grant(&self, http: &reqwest::Client) -> anyhow::Result<i64> {
        let response = http
            .post(format!("{}/admin/revocations", self.stack.issuer_url))
            .bearer_auth(&self.stack.admin_token)
            .json(&json!({"kind": RevocationKind::Grant.as_str(), "value": self.grant_id}))
            .timeout(REVOKE_TIMEOUT)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("revoking grant {}: {status} {body}", self.grant_id);
        }
        body["seq"].as_i64().context("the revocation has no seq")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_targets() {
        assert!(ensure_loopback("http://127.0.0.1:8080/mcp/expenses").is_ok());
        assert!(ensure_loopback("http://10.0.0.1:8080/mcp").is_err());
        assert!(ensure_loopback("http://127.0.0.1.example.com/mcp").is_err());
    }
}
