//! `Last-Event-ID` resumption through the gateway, against a real resumable upstream
//! (`@modelcontextprotocol/server-everything`, which keeps an event store): a client whose
//! response stream broke mid-call reconnects with GET and the last event id it saw, and gets
//! the rest of the stream (the remaining progress and the result) through the gateway, under
//! the session id the gateway gave it.
//!
//! Needs Node and server-everything (`PORTCULLIS_NODE`, `PORTCULLIS_EVERYTHING`, set by
//! `scripts/test.sh`); without them it says so and passes, unless `PORTCULLIS_REQUIRE_INTEROP`
//! is set.

use std::time::Duration;

use portcullis_examples::agent::IssuerClient;
use portcullis_examples::everything::Everything;
use portcullis_examples::interop::tools_from_env;
use serde_json::{Value, json};

/// One server-sent event: its id, if any, and its data as JSON.
#[derive(Debug)]
struct Event {
    id: Option<String>,
    data: Value,
}

/// Reads events from `response` until `done` says stop or the stream ends.
async fn read_events(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim());
                }
            }
            let Ok(data) = serde_json::from_str(&data) else {
                continue; // a priming event, or a comment
            };
            let event = Event { id, data };
            let stop = done(&event);
            events.push(event);
            if stop {
                return events;
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_resumes_through_the_gateway_with_last_event_id() {
    let Some([node, entry]) = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_EVERYTHING"]) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let (everything, stack) = Everything::behind_gateway(&node, entry.as_ref(), dir.path())
        .await
        .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("resumer", "Resumer").await.unwrap();
    let resource = format!("{}/mcp/everything", stack.gateway_url);
    let grant = json!([{"type": "mcp_tools",
                        "tools": ["everything/trigger-long-running-operation"], "max_depth": 0}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &resource, grant)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut request = http
            .post(&resource)
            .bearer_auth(&token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };

    let initialized = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "resumer", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(initialized.status().as_u16(), 200);
    let session = initialized.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    drop(initialized);
    let notified = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(notified.status().as_u16(), 202);

    // Four steps over two seconds; the client goes away after the first progress event.
    let mut call = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 2, "steps": 4},
            "_meta": {"progressToken": "p"}}}),
        Some(&session),
    )
    .await
    .unwrap();
    assert_eq!(call.status().as_u16(), 200);
    let first = read_events(&mut call, |e| e.data["method"] == "notifications/progress").await;
    let last = first.last().expect("a first progress event");
    assert_eq!(last.data["params"]["progress"], 1, "{first:?}");
    let last_id = last.id.clone().expect("resumable events carry ids");
    drop(call);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut resumed = http
        .get(&resource)
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status().as_u16(), 200);
    let rest = tokio::time::timeout(
        Duration::from_secs(10),
        read_events(&mut resumed, |e| e.data["id"] == 2),
    )
    .await
    .expect("the rest of the stream arrives");
    let progress: Vec<&Value> = rest
        .iter()
        .filter(|e| e.data["method"] == "notifications/progress")
        .map(|e| &e.data["params"]["progress"])
        .collect();
    assert_eq!(
        progress,
        [2, 3, 4],
        "exactly the events after the last one seen: {rest:?}"
    );
    let result = &rest.last().unwrap().data;
    assert_eq!(result["id"], 2, "{result}");
    assert!(
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("completed"),
        "{result}"
    );
    stack.stop();
    everything.stop().await;
}
