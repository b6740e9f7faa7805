//! Requests larger than Pingora's 64 KiB replay buffer, end to end with the issuer, the gateway
//! and the rmcp expenses server: judged whole, forwarded byte for byte, refused without the
//! upstream seeing any of them, held within the body buffer, and killed like any other call.

use std::time::Duration;

use portcullis_examples::agent::{
    ClientCredentials, IssuerClient, RawSession, answer, expense_grant,
};
use portcullis_examples::sha256_hex;
use portcullis_examples::stack::{Stack, StackOptions, gateway_binary};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

const MIB: usize = 1024 * 1024;

struct World {
    stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    _dir: tempfile::TempDir,
}

async fn world(gateway_yaml: &str) -> World {
    let dir = tempfile::TempDir::new().unwrap();
    let options = StackOptions {
        gateway_extra_yaml: gateway_yaml.to_owned(),
        // A process of its own: the body buffer's gauge is then this gateway's alone, not
        // shared with the gateways of tests running beside it.
        gateway_binary: Some(gateway_binary()),
        ..StackOptions::sqlite(dir.path())
    };
    let stack = Stack::start(&options).await.unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("expense-agent", "Expense agent")
        .await
        .unwrap();
    World {
        stack,
        issuer,
        agent,
        _dir: dir,
    }
}

impl World {
    /// A session under the expense grant, plus receipts for expenses up to #100 and reports.
    async fn session(&self) -> (String, RawSession) {
        let mut grant = expense_grant();
        let tools = grant[0]["tools"].as_array_mut().unwrap();
        tools.push(json!("expenses/attach_receipt"));
        tools.push(json!("expenses/slow_report"));
        grant[0]["limits"]
            .as_array_mut()
            .unwrap()
            .push(json!({"tool": "expenses/attach_receipt", "pointer": "/expense", "max": 100}));
        let (grant_id, token) = self
            .issuer
            .delegation(&self.agent, "alice", &self.stack.resource, grant)
            .await
            .unwrap();
        let session = RawSession::open(&self.stack.resource, &token)
            .await
            .unwrap();
        (grant_id, session)
    }

    fn tool_calls_seen(&self) -> usize {
        self.stack.expenses.tool_calls_seen()
    }

    async fn body_buffer_bytes(&self) -> u64 {
        let metrics = self.stack.gateway_metrics().await.unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("portcullis_gateway_body_buffer_bytes "))
            .expect("the body buffer gauge is exported")
            .parse()
            .unwrap()
    }
}

/// A `tools/call` of `tool` written by hand: `arguments_json` goes in as it is, so its bytes
/// (spacing, escapes, key order) are the test's choice.
fn call(id: u64, tool: &str, arguments_json: &str) -> Vec<u8> {
    format!(
        "{{\"jsonrpc\":\"2.0\", \"id\":{id},\n \"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{arguments_json}}}}}"
    )
    .into_bytes()
}

/// A receipt of about `bytes` bytes of text, with escapes the upstream must see unchanged.
fn receipt(bytes: usize) -> String {
    let line = "Caf\\u00e9 cr\u{e8}me \\\"deluxe\\\"  \\t 4.20 EUR\\n";
    line.repeat(bytes / line.len() + 1)
}

#[tokio::test]
async fn a_large_call_is_judged_whole_and_reaches_the_upstream_byte_for_byte() {
    let w = world("").await;
    let (_, session) = w.session().await;
    let body = call(
        7,
        "attach_receipt",
        &format!(
            "{{ \"expense\" : 7, \"content\": \"{}\" }}",
            receipt(3 * MIB)
        ),
    );
    assert!(body.len() > 3 * MIB);

    let response = session.post(body.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer = answer(response).await.unwrap();
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("receipt of ") && text.ends_with("bytes attached to expense #7"),
        "{answer}"
    );

    let seen = w.stack.expenses.seen_requests();
    let call = seen
        .iter()
        .rfind(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .unwrap();
    assert_eq!(call.body_len, body.len());
    assert_eq!(
        call.body_sha256,
        sha256_hex(&body),
        "forwarded byte for byte"
    );
    assert_eq!(
        call.subject.as_deref(),
        Some("alice"),
        "with its own credential"
    );
    let receipts = w.stack.expenses.receipts();
    assert_eq!(receipts.len(), 1);
    assert!(
        receipts[0]
            .content
            .starts_with("Café crème \"deluxe\"  \t 4.20 EUR\n")
    );
    assert_eq!(w.body_buffer_bytes().await, 0, "its room is given back");
}

#[tokio::test]
async fn a_refused_large_call_never_reaches_the_upstream() {
    let w = world("").await;
    let (_, session) = w.session().await;
    let before = w.tool_calls_seen();
    // The argument that breaks the limit comes last, after 3 MiB: only a judge that read the
    // whole body can see it, and nothing of the body may have gone ahead.
    let over_limit = call(
        8,
        "attach_receipt",
        &format!(
            "{{\"content\": \"{}\", \"expense\": 101}}",
            receipt(3 * MIB)
        ),
    );
    let refused = answer(session.post(over_limit).await.unwrap())
        .await
        .unwrap();
    assert_eq!(refused["error"]["code"], -31001, "{refused}");
    assert_eq!(refused["error"]["data"]["reason"], "limit_max", "{refused}");

    let not_granted = call(
        9,
        "delete_all_expenses",
        &format!("{{\"why\": \"{}\"}}", "x".repeat(2 * MIB)),
    );
    let refused = answer(session.post(not_granted).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        refused["error"]["data"]["reason"], "tool_not_granted",
        "{refused}"
    );

    assert_eq!(w.tool_calls_seen(), before, "the upstream saw none of them");
    assert!(w.stack.expenses.receipts().is_empty());
    assert_eq!(w.body_buffer_bytes().await, 0);
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_with_or_without_a_length() {
    let w = world("max_body_bytes: 1048576\nbody_buffer_bytes: 2097152\n").await;
    let (_, session) = w.session().await;
    let before = w.tool_calls_seen();
    let too_large = call(
        10,
        "attach_receipt",
        &format!("{{\"expense\": 1, \"content\": \"{}\"}}", "x".repeat(MIB)),
    );
    let response = session.post(too_large.clone()).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(answer(response).await.unwrap()["error"]["code"], -31005);

    // Chunked, with no length to refuse it by: refused once it has read past the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = too_large
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let response = reqwest::Client::new()
        .post(&w.stack.resource)
        .bearer_auth(session.token())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(w.tool_calls_seen(), before);
    assert_eq!(w.body_buffer_bytes().await, 0);
}

#[tokio::test]
async fn large_bodies_wait_for_room_in_the_body_buffer() {
    // Room for one body of 1 MiB (held twice over: the body and its parsed message), not for
    // two.
    let w = world("max_body_bytes: 1048576\nbody_buffer_bytes: 3145728\n").await;
    let (_, session) = w.session().await;

    // A client that declares 1 000 000 bytes and sends 100 000: its body holds its room,
    // 2 000 000 bytes.
    let url = reqwest::Url::parse(&w.stack.resource).unwrap();
    let mut stalled = tokio::net::TcpStream::connect((
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap(),
    ))
    .await
    .unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nMcp-Session-Id: {}\r\nContent-Length: 1000000\r\n\r\n",
        url.path(),
        url.authority(),
        session.token(),
        session.id(),
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[b' '; 100_000]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while w.body_buffer_bytes().await != 2_000_000 {
        assert!(tokio::time::Instant::now() < deadline, "room was not taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second large body waits: 1 800 000 more would go past the bound.
    let second = call(
        11,
        "attach_receipt",
        &format!(
            "{{\"expense\": 2, \"content\": \"{}\"}}",
            "r".repeat(900_000)
        ),
    );
    let waiting = tokio::spawn({
        let session = session.clone();
        async move { session.post(second).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!waiting.is_finished(), "the second body waits for room");
    assert_eq!(w.body_buffer_bytes().await, 2_000_000);
    assert!(w.stack.expenses.receipts().is_empty());

    // The stalled client gives up: its room goes back, and the second body goes through.
    drop(stalled);
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let answer = answer(response).await.unwrap();
    assert_eq!(
        answer["result"]["content"][0]["text"], "receipt of 900000 bytes attached to expense #2",
        "{answer}"
    );
    assert_eq!(w.body_buffer_bytes().await, 0);
}

#[tokio::test]
async fn revoking_the_grant_ends_a_large_call_under_way() {
    let w = world("").await;
    let (grant, session) = w.session().await;
    let before = w.stack.expenses.cancelled_reports();
    let report = call(
        12,
        "slow_report",
        &format!("{{\"seconds\": 30, \"notes\": \"{}\"}}", "n".repeat(MIB)),
    );
    let running = tokio::spawn({
        let session = session.clone();
        async move { answer(session.post(report).await.unwrap()).await.unwrap() }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !w
        .stack
        .expenses
        .seen_requests()
        .iter()
        .any(|r| r.body_len > MIB)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let revoked_at = tokio::time::Instant::now();
    w.issuer.revoke("grant", &grant).await.unwrap();
    let ended: Value = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the call ends soon after the revocation")
        .unwrap();
    assert!(revoked_at.elapsed() < Duration::from_secs(10));
    assert_eq!(ended["error"]["code"], -31007, "{ended}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while w.stack.expenses.cancelled_reports() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream was not told to stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
