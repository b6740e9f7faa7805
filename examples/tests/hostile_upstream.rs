//! An upstream that misbehaves on purpose, behind the real gateway and issuer: each answer is
//! written byte for byte by the test, as a hostile or broken MCP server would write it, and
//! every request it receives is recorded. Each case checks what the agent gets and, where a
//! request must be refused, that the upstream never saw it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use portcullis_examples::agent::IssuerClient;
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the hostile upstream received: the JSON-RPC method and the request's headers.
#[derive(Debug, Clone)]
struct Seen {
    method: Option<String>,
    headers: Vec<(String, String)>,
}

/// Writes the whole HTTP answer to a request, given its JSON-RPC method.
type Answer = Arc<dyn Fn(Option<&str>) -> Vec<u8> + Send + Sync>;

/// A loopback HTTP/1.1 server answering every request with `answer`, one per connection.
async fn hostile_upstream(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (answer, log) = (answer.clone(), log.clone());
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut headers = Vec::new();
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                loop {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                    let Some((name, value)) = line.trim_end().split_once(':') else {
                        break;
                    };
                    headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                }
                let length = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                stream.read_exact(&mut body).await.unwrap();
                let method = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|m| m["method"].as_str().map(str::to_owned));
                let response = answer(method.as_deref());
                log.lock().unwrap().push(Seen { method, headers });
                let mut stream = stream.into_inner();
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn http(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `tools/list` result with one granted tool and one the grant does not name.
fn tools_list() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
        {"name": "allowed_tool", "inputSchema": {"type": "object"}},
        {"name": "secret_tool", "inputSchema": {"type": "object"}},
    ]}})
    .to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

struct World {
    stack: Stack,
    token: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

async fn world(answer: Answer) -> World {
    let dir = tempfile::TempDir::new().unwrap();
    let (url, seen) = hostile_upstream(answer).await;
    let stack = Stack::start(&StackOptions::with_upstream(dir.path(), "hostile", &url))
        .await
        .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("agent", "Agent").await.unwrap();
    let details = json!([{
        "type": "mcp_tools",
        "tools": ["hostile/allowed_tool"],
        "resources": ["hostile/file:///granted/*"],
        "prompts": ["hostile/granted_prompt"],
        "max_depth": 0
    }]);
    let resource = format!("{}/mcp/hostile", stack.gateway_url);
    let (_, token) = issuer
        .delegation(&agent, "alice", &resource, details)
        .await
        .unwrap();
    World {
        stack,
        token,
        seen,
        _dir: dir,
    }
}

impl World {
    /// POSTs one JSON-RPC message (as raw text: some cases are not what `json!` would write).
    async fn post(&self, body: &str) -> (u16, Vec<u8>) {
        let response = reqwest::Client::new()
            .post(format!("{}/mcp/hostile", self.stack.gateway_url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    fn methods_seen(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.method.clone())
            .collect()
    }
}

fn list_request() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string()
}

/// The gateway's count of upstream answers refused for `reason` (the tests of this file share
/// one process, so one metric registry).
async fn refusals(stack: &Stack, reason: &str) -> u64 {
    let metrics = stack.gateway_metrics().await.unwrap();
    let series = format!(
        r#"portcullis_gateway_upstream_answers_refused_total{{reason="{reason}",upstream="hostile"}} "#
    );
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |count| count.parse().unwrap())
}

/// The JSON-RPC error in a body, whether sent as JSON or as one SSE event.
fn error_of(body: &[u8]) -> Value {
    let text = String::from_utf8_lossy(body);
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&text);
    serde_json::from_str::<Value>(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_list_is_withheld_not_passed_on_unread() {
    let answer: Answer = Arc::new(|_| {
        let event = format!("event: message\ndata: {}\n\n", tools_list());
        http(
            "200 OK",
            &["content-type: text/event-stream", "content-encoding: gzip"],
            &gzip(event.as_bytes()),
        )
    });
    let world = world(answer).await;
    let (status, body) = world.post(&list_request()).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let error = error_of(&body);
    assert_eq!(error["error"]["code"], -31003, "{error}");
    assert_eq!(error["id"], 1, "the request's id, not null");
    let seen = world.seen.lock().unwrap().clone();
    let asked = seen[0].headers.iter().find(|(n, _)| n == "accept-encoding");
    assert_eq!(
        asked.map(|(_, v)| v.as_str()),
        Some("identity"),
        "the gateway asks for what it can read"
    );
    let refused = refusals(&world.stack, "unreadable_encoding").await;
    assert!(refused >= 1, "counted: {refused}");
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_json_list_is_withheld_too() {
    let answer: Answer = Arc::new(|_| {
        http(
            "200 OK",
            &[
                "content-type: application/json",
                "content-encoding: deflate",
            ],
            &gzip(tools_list().as_bytes()),
        )
    });
    let world = world(answer).await;
    let (status, body) = world.post(&list_request()).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    assert_eq!(error_of(&body)["error"]["code"], -31003);
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opening_with_a_byte_order_mark_is_filtered_as_its_client_reads_it() {
    let answer: Answer = Arc::new(|_| {
        // The mark right before the first field: a reader that keeps it sees no `data` line.
        let mut event = b"\xEF\xBB\xBF".to_vec();
        event.extend_from_slice(format!("data: {}\n\n", tools_list()).as_bytes());
        http("200 OK", &["content-type: text/event-stream"], &event)
    });
    let world = world(answer).await;
    let (status, body) = world.post(&list_request()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("allowed_tool"), "{text}");
    assert!(
        !text.contains("secret_tool"),
        "the hidden tool got through: {text}"
    );
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_ending_the_stream_in_cr_cr_reaches_the_agent_filtered() {
    let answer: Answer = Arc::new(|_| {
        let event = format!("event: message\rdata: {}\r\r", tools_list());
        http(
            "200 OK",
            &["content-type: text/event-stream"],
            event.as_bytes(),
        )
    });
    let world = world(answer).await;
    let (status, body) = world.post(&list_request()).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("allowed_tool"),
        "the last event was dropped: {text:?}"
    );
    assert!(!text.contains("secret_tool"), "{text}");
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_gateways_credential_is_a_502_with_the_request_id() {
    let answer: Answer = Arc::new(|_| {
        http(
            "401 Unauthorized",
            &[
                "content-type: application/json",
                r#"www-authenticate: Bearer error="invalid_token""#,
            ],
            br#"{"error":"invalid_token"}"#,
        )
    });
    let world = world(answer).await;
    let call = json!({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
        "params": {"name": "allowed_tool", "arguments": {}}});
    let (status, body) = world.post(&call.to_string()).await;
    assert_eq!(
        status,
        502,
        "not the agent's 401: {}",
        String::from_utf8_lossy(&body)
    );
    let error = error_of(&body);
    assert_eq!(error["error"]["code"], -31003, "{error}");
    assert_eq!(error["id"], 42);
    let refused = refusals(&world.stack, "credential_refused").await;
    assert!(refused >= 1, "counted: {refused}");
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_that_only_look_like_judged_ones_never_reach_the_upstream() {
    let answer: Answer = Arc::new(|_| {
        http(
            "200 OK",
            &["content-type: application/json"],
            br#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        )
    });
    let world = world(answer).await;
    for method in [
        "Tools/Call",
        "tools/call ",
        "tools/call\u{1}",
        "TOOLS/CALL",
        "tools/Call",
    ] {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": method,
            "params": {"name": "secret_tool", "arguments": {}}});
        let (status, body) = world.post(&call.to_string()).await;
        let error = error_of(&body);
        assert!(
            [-32601, -32600].contains(&error["error"]["code"].as_i64().unwrap()),
            "{method:?}: {status} {error}"
        );
    }
    assert!(
        world.methods_seen().is_empty(),
        "the upstream saw {:?}",
        world.methods_seen()
    );
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_subscriptions_are_judged_like_reads() {
    let answer: Answer = Arc::new(|_| {
        http(
            "200 OK",
            &["content-type: application/json"],
            br#"{"jsonrpc":"2.0","id":1,"result":{"completion":{"values":["x"]}}}"#,
        )
    });
    let world = world(answer).await;
    let refused = [
        json!({"method": "completion/complete", "params": {
            "ref": {"type": "ref/prompt", "name": "secret_prompt"},
            "argument": {"name": "a", "value": ""}}}),
        json!({"method": "completion/complete", "params": {
            "ref": {"type": "ref/resource", "uri": "file:///secret/{name}"},
            "argument": {"name": "name", "value": ""}}}),
        json!({"method": "resources/subscribe", "params": {"uri": "file:///secret/a"}}),
        json!({"method": "resources/unsubscribe", "params": {"uri": "file:///secret/a"}}),
    ];
    for mut request in refused {
        request["jsonrpc"] = json!("2.0");
        request["id"] = json!(5);
        let (_, body) = world.post(&request.to_string()).await;
        let error = error_of(&body);
        assert_eq!(error["error"]["code"], -31001, "{request}: {error}");
    }
    assert!(
        world.methods_seen().is_empty(),
        "{:?}",
        world.methods_seen()
    );

    let granted = json!({"jsonrpc": "2.0", "id": 6, "method": "completion/complete", "params": {
        "ref": {"type": "ref/prompt", "name": "granted_prompt"},
        "argument": {"name": "a", "value": ""}}});
    let (status, body) = world.post(&granted.to_string()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        world.methods_seen(),
        [Some("completion/complete".to_owned())]
    );
    world.stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_a_legacy_member_refuses_stateless_requests_cleanly() {
    // A member of the session revisions only: `server/discover` is unknown to it, and without
    // a session it answers as such servers do, with a raw HTTP 400.
    let answer: Answer = Arc::new(|method| {
        match method {
        Some("server/discover") => http(
            "200 OK",
            &["content-type: application/json"],
            br#"{"jsonrpc":"2.0","id":"portcullis-fleet-discover","error":{"code":-32601,"message":"Method not found"}}"#,
        ),
        _ => http(
            "400 Bad Request",
            &["content-type: text/plain"],
            b"Bad Request: Server not initialized",
        ),
    }
    });
    let dir = tempfile::TempDir::new().unwrap();
    let (url, seen) = hostile_upstream(answer).await;
    let mut options = StackOptions::with_upstream(dir.path(), "legacy", &url);
    options.gateway_extra_yaml = "fleets: [{name: office, members: [expenses, legacy]}]\n".into();
    let stack = Stack::start(&options).await.unwrap();
    let office = format!("{}/mcp/office", stack.gateway_url);
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("agent", "Agent").await.unwrap();
    let details = json!([{"type": "mcp_tools",
        "tools": ["expenses/list_expenses", "legacy/allowed_tool"], "max_depth": 0}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &office, details)
        .await
        .unwrap();

    for request in [
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "legacy__allowed_tool", "arguments": {}}}),
    ] {
        let response = reqwest::Client::new()
            .post(&office)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", request["method"].as_str().unwrap())
            .json(&request)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], -32022, "{body}");
        assert_eq!(body["id"], 3);
        let supported = body["error"]["data"]["supported"].as_array().unwrap();
        assert!(supported.contains(&json!("2025-11-25")), "{body}");
        assert!(!supported.contains(&json!("2026-07-28")), "{body}");
    }
    let methods: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert!(
        methods
            .iter()
            .all(|m| m.as_deref() == Some("server/discover")),
        "the legacy member got {methods:?}"
    );
    stack.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_member_listing_in_a_content_coding_is_left_out_not_passed_on_unread() {
    let answer: Answer = Arc::new(|method| {
        match method {
        Some("initialize") => http(
            "200 OK",
            &["content-type: application/json", "mcp-session-id: member-1"],
            br#"{"jsonrpc":"2.0","id":"portcullis-fleet-initialize","result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"hostile","version":"1"}}}"#,
        ),
        Some("notifications/initialized") => http("202 Accepted", &[], b""),
        _ => http(
            "200 OK",
            &["content-type: application/json", "content-encoding: gzip"],
            &gzip(tools_list().as_bytes()),
        ),
    }
    });
    let dir = tempfile::TempDir::new().unwrap();
    let (url, seen) = hostile_upstream(answer).await;
    let mut options = StackOptions::with_upstream(dir.path(), "hostile", &url);
    options.gateway_extra_yaml = "fleets: [{name: office, members: [expenses, hostile]}]\n".into();
    let stack = Stack::start(&options).await.unwrap();
    let office = format!("{}/mcp/office", stack.gateway_url);
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("agent", "Agent").await.unwrap();
    let details = json!([{"type": "mcp_tools",
        "tools": ["expenses/list_expenses", "hostile/allowed_tool"], "max_depth": 0}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &office, details)
        .await
        .unwrap();
    let post = |session: Option<String>, message: Value| {
        let mut request = reqwest::Client::new()
            .post(&office)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&message);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"}}});
    let opened = post(None, initialize).await.unwrap();
    assert_eq!(opened.status().as_u16(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}});
    let listed: Value = post(Some(session), list)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {listed}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    // The expenses member's tools are served; the member the gateway cannot read adds none,
    // neither the granted one nor the hidden one.
    assert_eq!(names, ["expenses__list_expenses"], "{listed}");
    let seen = seen.lock().unwrap().clone();
    let list_request = seen
        .iter()
        .find(|s| s.method.as_deref() == Some("tools/list"))
        .expect("the member was asked for its tools");
    let asked = list_request
        .headers
        .iter()
        .find(|(n, _)| n == "accept-encoding");
    assert_eq!(asked.map(|(_, v)| v.as_str()), Some("identity"));
    stack.stop();
}
