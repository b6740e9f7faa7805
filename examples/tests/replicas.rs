//! Two gateway replicas in front of one expenses server, sharing a signing key and (or not)
//! one Redis, as replicas behind one Service do: a grant's rate cap holds across them, and
//! what each does while Redis cannot be reached follows `shared_state.mode`.
//!
//! Redis is the machine's (`PORTCULLIS_TEST_REDIS_URL`, by default 127.0.0.1:6379); each test
//! keeps its keys under a prefix of its own and deletes them at the end. Without Redis these
//! tests fail at once, saying so.

use portcullis_examples::agent::{IssuerClient, McpSession, connect};
use portcullis_examples::replica::signing_key_yaml;
use portcullis_examples::stack::{Stack, StackOptions, free_port};
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

fn redis_url() -> String {
    std::env::var("PORTCULLIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key space of its own in the test Redis, emptied when dropped.
struct KeySpace {
    prefix: String,
    redis: redis::Client,
}

impl KeySpace {
    fn new() -> Self {
        let url = redis_url();
        let redis = redis::Client::open(url.as_str()).unwrap();
        let reachable = redis
            .get_connection_with_timeout(std::time::Duration::from_secs(2))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if let Err(e) = reachable {
            panic!("these tests need Redis at {url} (set PORTCULLIS_TEST_REDIS_URL): {e}");
        }
        Self {
            prefix: format!(
                "portcullis-test:{}:",
                &portcullis_examples::random_secret()[..16]
            ),
            redis,
        }
    }
}

impl Drop for KeySpace {
    fn drop(&mut self) {
        let mut c = self.redis.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut c)
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("DEL").arg(keys).exec(&mut c).unwrap();
        }
    }
}

/// A stack whose gateway has a `shared_state:` section, one more replica of it, and an
/// agent's token under a grant capped at `per_hour` calls of `list_expenses`.
struct World {
    stack: Stack,
    replica: portcullis_examples::replica::Replica,
    token: String,
    _dir: tempfile::TempDir,
}

async fn world(shared_state: &str, per_hour: u32) -> World {
    let dir = tempfile::TempDir::new().unwrap();
    let options = StackOptions {
        gateway_extra_yaml: format!(
            "{}shared_state: {shared_state}\n",
            signing_key_yaml(dir.path()).unwrap()
        ),
        ..StackOptions::sqlite(dir.path())
    };
    let stack = Stack::start(&options).await.unwrap();
    let replica = stack.start_replica("").await.unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("expense-agent", "Expense agent")
        .await
        .unwrap();
    let capped = json!([{"type": "mcp_tools", "tools": ["expenses/list_expenses"],
        "rate": {"per_hour": per_hour}}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, capped)
        .await
        .unwrap();
    World {
        stack,
        replica,
        token,
        _dir: dir,
    }
}

impl World {
    /// `calls` calls of `list_expenses`, alternating between the two replicas (a session on
    /// each); returns the reasons of the refusals, in order.
    async fn alternate(&self, calls: usize) -> (usize, Vec<String>) {
        let sessions = [
            connect(&self.stack.resource, &self.token).await.unwrap(),
            connect(&self.replica.resource, &self.token).await.unwrap(),
        ];
        let mut allowed = 0;
        let mut refused = Vec::new();
        for i in 0..calls {
            match call(&sessions[i % 2]).await {
                Ok(()) => allowed += 1,
                Err(reason) => refused.push(reason),
            }
        }
        for session in sessions {
            session.cancel().await.unwrap();
        }
        (allowed, refused)
    }

    /// A raw `tools/call` at the replica: the HTTP status and the body.
    async fn post_call(&self) -> (u16, Value) {
        let response = reqwest::Client::new()
            .post(&self.replica.resource)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"list_expenses","arguments":{}}}"#)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// One `list_expenses` call: allowed, or refused by the gateway with this `data.reason`.
async fn call(session: &McpSession) -> Result<(), String> {
    let params = CallToolRequestParams::new("list_expenses").with_arguments(Default::default());
    match session.call_tool(params).await {
        Ok(_) => Ok(()),
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code.0, -31001, "{error:?}");
            Err(
                error.data.as_ref().expect("a denial carries data")["reason"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        }
        Err(other) => panic!("transport failure instead of a JSON-RPC answer: {other}"),
    }
}

/// The value of a counter in Prometheus text, 0 when absent.
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_rate_cap_holds_across_two_replicas_sharing_redis() {
    let keys = KeySpace::new();
    let w = world(
        &format!(
            "{{redis_url: '{}', key_prefix: '{}'}}",
            redis_url(),
            keys.prefix
        ),
        5,
    )
    .await;
    let (allowed, refused) = w.alternate(8).await;
    assert_eq!(allowed, 5);
    assert_eq!(refused, ["rate_limited"; 3]);
    assert_eq!(w.stack.expenses.tool_calls_seen(), 5);
}

/// A world whose `shared_state` points at a port nothing listens on.
async fn without_redis(mode: &str, per_hour: u32) -> World {
    let closed = free_port().unwrap();
    let section = format!("{{redis_url: 'redis://{closed}', mode: {mode}, timeout_ms: 50}}");
    world(&section, per_hour).await
}

#[tokio::test]
async fn a_strict_replica_refuses_rate_capped_calls_while_redis_is_unreachable() {
    let w = without_redis("strict", 5).await;
    for _ in 0..2 {
        let (status, body) = w.post_call().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["id"], 9);
        assert_eq!(body["error"]["code"], -31010, "{body}");
        assert_eq!(body["error"]["data"]["reason"], "rate_unavailable");
        assert_eq!(body["error"]["data"]["tool"], "expenses/list_expenses");
    }
    assert_eq!(
        w.stack.expenses.tool_calls_seen(),
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_lenient_replica_counts_alone_while_redis_is_unreachable() {
    let w = without_redis("lenient", 3).await;
    let series = r#"portcullis_gateway_shared_store_fallbacks_total{operation="rate"}"#;
    let before = counter(&w.stack.gateway_metrics().await.unwrap(), series);
    let (allowed, refused) = w.alternate(8).await;
    // Each replica allows its own 3 of the 4 calls it sees.
    assert_eq!(allowed, 6);
    assert_eq!(refused, ["rate_limited"; 2]);
    assert_eq!(w.stack.expenses.tool_calls_seen(), 6);
    // Both replicas run in this process and share its metrics.
    let after = counter(&w.stack.gateway_metrics().await.unwrap(), series);
    assert_eq!(after - before, 8.0);
}
