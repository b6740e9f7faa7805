//! Gateway replicas in front of one expenses server, sharing a signing key, session keys and
//! (or not) one Redis, as replicas behind one Service do: a grant's rate cap holds across them,
//! what each does while Redis cannot be reached follows `shared_state.mode`, and behind a
//! round-robin balancer the official Python and TypeScript SDK clients keep one MCP session
//! whichever replica each of their requests reaches.
//!
//! Redis is the machine's (`PORTCULLIS_TEST_REDIS_URL`, by default 127.0.0.1:6379); each test
//! keeps its keys under a prefix of its own and deletes them at the end. Without Redis these
//! tests fail at once, saying so.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_examples::agent::{IssuerClient, McpSession, connect};
use portcullis_examples::interop::tools_from_env;
use portcullis_examples::loopback_proxy::RoundRobin;
use portcullis_examples::replica::Replica;
use portcullis_examples::replica::replica_keys_yaml;
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
            replica_keys_yaml(dir.path()).unwrap()
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
async fn a_strict_replica_refuses_session_requests_while_redis_is_unreachable() {
    let w = without_redis("strict", 5).await;
    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"probe","version":"1"}}}"#;
    let post = |session: Option<&str>, body: &'static str| {
        let mut request = reqwest::Client::new()
            .post(&w.replica.resource)
            .bearer_auth(&w.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(session) = session {
            request = request
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18");
        }
        request.send()
    };
    let opened = post(None, initialize).await.unwrap();
    assert_eq!(opened.status().as_u16(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let seen = w.stack.expenses.seen_requests().len();
    let answer = post(
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 503);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], -31010, "{body}");
    assert_eq!(body["error"]["data"]["reason"], "session_unavailable");
    assert_eq!(
        w.stack.expenses.seen_requests().len(),
        seen,
        "nothing went upstream in a session no one could vouch for"
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

/// Three replicas sharing keys and Redis behind a round-robin balancer, and a token whose
/// grant is `details`.
struct Balanced {
    stack: Stack,
    replicas: [Replica; 2],
    /// The expenses endpoint through the balancer.
    resource: String,
    grant_id: String,
    token: String,
    _balancer: RoundRobin,
    _keys: KeySpace,
    _dir: tempfile::TempDir,
}

async fn balanced(details: Value) -> Balanced {
    let keys = KeySpace::new();
    let dir = tempfile::TempDir::new().unwrap();
    let shared_state = format!(
        "shared_state: {{redis_url: '{}', key_prefix: '{}', mode: strict}}\n",
        redis_url(),
        keys.prefix
    );
    let options = StackOptions {
        gateway_extra_yaml: replica_keys_yaml(dir.path()).unwrap() + &shared_state,
        ..StackOptions::sqlite(dir.path())
    };
    let stack = Stack::start(&options).await.unwrap();
    let replicas = [
        stack.start_replica("").await.unwrap(),
        stack.start_replica("").await.unwrap(),
    ];
    let balancer = RoundRobin::start(&[&stack.gateway_url, &replicas[0].url, &replicas[1].url])
        .await
        .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("balanced-agent", "Agent behind a balancer")
        .await
        .unwrap();
    let (grant_id, token) = issuer
        .delegation(&agent, "alice", &stack.resource, details)
        .await
        .unwrap();
    Balanced {
        resource: format!("{}/mcp/expenses", balancer.url()),
        replicas,
        stack,
        grant_id,
        token,
        _balancer: balancer,
        _keys: keys,
        _dir: dir,
    }
}

impl Balanced {
    /// The expenses endpoint at each replica, directly.
    fn replica_resources(&self) -> [&str; 3] {
        [
            &self.stack.resource,
            &self.replicas[0].resource,
            &self.replicas[1].resource,
        ]
    }

    /// Asserts what an SDK client saw: its tools, `per_hour` calls allowed and the rest refused
    /// for the shared cap, every request answered within one session, a GET stream, a DELETE;
    /// then that the ended session is unknown at every replica.
    async fn check_session_client(&self, seen: &Value, per_hour: usize, calls: usize) {
        assert_eq!(seen["tools"], json!(["list_expenses"]), "{seen}");
        let mut expected = vec![json!("ok"); per_hour];
        expected.resize(calls, json!("-31001 rate_limited"));
        assert_eq!(seen["calls"], json!(expected), "{seen}");
        assert_eq!(self.stack.expenses.tool_calls_seen(), per_hour);
        let requests = seen["requests"].as_array().unwrap();
        // Round robin over three replicas: with this many requests, each served several.
        assert!(requests.len() >= 3 * 3, "{seen}");
        let session = requests[0]["status"]
            .as_u64()
            .filter(|&status| status == 200)
            .and(requests[1]["session"].as_str())
            .unwrap_or_else(|| panic!("initialize opened a session: {seen}"));
        for request in &requests[1..] {
            assert_eq!(
                request["session"], session,
                "one session throughout: {seen}"
            );
            let status = request["status"].as_u64().unwrap();
            assert!((200..300).contains(&status), "{request}: {seen}");
        }
        for method in ["GET", "DELETE"] {
            assert!(
                requests.iter().any(|r| r["method"] == method),
                "no {method}: {seen}"
            );
        }
        for resource in self.replica_resources() {
            let response = reqwest::Client::new()
                .post(resource)
                .bearer_auth(&self.token)
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", "2025-06-18")
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status().as_u16(),
                404,
                "the ended session at {resource}"
            );
        }
    }
}

/// A grant of `list_expenses` capped at `per_hour` calls.
fn capped(per_hour: usize) -> Value {
    json!([{"type": "mcp_tools", "tools": ["expenses/list_expenses"], "rate": {"per_hour": per_hour}}])
}

/// The JSON line a client script printed last.
fn printed(output: &std::process::Output, client: &str) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the {client} failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{client}: {e}: {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_keeps_one_session_and_one_cap_across_three_replicas() {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/py-mcp/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "the MCP Python SDK is not installed in .tools/py-mcp (run ./scripts/test.sh)"
        );
        eprintln!("skipping: the MCP Python SDK is not installed in .tools/py-mcp");
        return;
    }
    let w = balanced(capped(3)).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python_session_client.py");
    let run = tokio::process::Command::new(&python)
        .arg(script)
        .env("MCP_URL", &w.resource)
        .env("MCP_TOKEN", &w.token)
        .env("MCP_CALLS", "5")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finished within a minute")
        .unwrap();
    w.check_session_client(&printed(&output, "Python client"), 3, 5)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_keeps_one_session_and_one_cap_across_three_replicas() {
    let Some([node, sdk]) = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_TS_CLIENT"]) else {
        return;
    };
    let w = balanced(capped(3)).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/typescript_session_client.mjs");
    let run = tokio::process::Command::new(node)
        .arg(script)
        .env("MCP_URL", &w.resource)
        .env("MCP_TOKEN", &w.token)
        .env("MCP_CLIENT_MODULE", sdk)
        .env("MCP_CALLS", "5")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the TypeScript client finished within a minute")
        .unwrap();
    w.check_session_client(&printed(&output, "TypeScript client"), 3, 5)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_ends_a_live_stream_whichever_replica_carries_it() {
    let w = balanced(json!([{"type": "mcp_tools", "tools": ["expenses/slow_report"]}])).await;
    // Three sessions, three streaming calls: round robin puts them on different replicas.
    let mut calls = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let session = connect(&w.resource, &w.token).await.unwrap();
        let peer = session.peer().clone();
        calls.push(tokio::spawn(async move {
            let arguments = json!({"seconds": 20}).as_object().unwrap().clone();
            peer.call_tool(CallToolRequestParams::new("slow_report").with_arguments(arguments))
                .await
        }));
        sessions.push(session);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(calls.iter().all(|call| !call.is_finished()));
    let revoked = reqwest::Client::new()
        .post(format!("{}/admin/revocations", w.stack.issuer_url))
        .bearer_auth(&w.stack.admin_token)
        .json(&json!({"kind": "grant", "value": w.grant_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 201);
    for call in calls {
        let outcome = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("every streaming call ends at the revocation")
            .unwrap();
        match outcome {
            Err(ServiceError::McpError(error)) => assert_eq!(error.code.0, -31007, "{error:?}"),
            other => panic!("expected a revocation error, got {other:?}"),
        }
    }
}
