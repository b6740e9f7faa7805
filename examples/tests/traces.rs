//! Traces: the gateway, as a process of its own with the standard `OTEL_EXPORTER_OTLP_*`
//! variables set, exports a span per request and its steps over OTLP/HTTP to OpenTelemetry's
//! own test receiver (`oteltest`, PyPI); it continues the agent's W3C trace, hands the trace to
//! the MCP server in `traceparent` and in the message's `params._meta` (SEP-414), and names it
//! in each decision it logs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use portcullis_examples::agent::{IssuerClient, expense_grant};
use portcullis_examples::stack::{Stack, StackOptions, free_port, gateway_binary};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn sink_python() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/oteltest/bin/python");
    path.exists().then_some(path)
}

/// A POST of `body` to the gateway, with the caller's `traceparent`.
async fn post(stack: &Stack, token: &str, body: Value, session: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(&stack.resource)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&body);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response
}

#[tokio::test]
async fn a_call_is_one_trace_from_the_agent_through_the_gateway_into_the_mcp_server() {
    let Some(python) = sink_python() else {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "oteltest is not installed in .tools/oteltest (run ./scripts/test.sh)"
        );
        eprintln!("skipping: oteltest is not installed");
        return;
    };
    let port = free_port().unwrap().port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/otlp_sink.py");
    let mut sink = tokio::process::Command::new(python)
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut spans = BufReader::new(sink.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), spans.next_line())
        .await
        .expect("the sink starts")
        .unwrap()
        .unwrap();
    assert!(ready.contains("listening"), "{ready}");

    let dir = tempfile::tempdir().unwrap();
    let audit_dir = dir.path().join("audit");
    let stack = Stack::start(&StackOptions {
        gateway_binary: Some(gateway_binary()),
        gateway_env: vec![
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".into(),
                format!("http://127.0.0.1:{port}/v1/traces"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        audit_dir: Some(audit_dir.clone()),
        ..StackOptions::sqlite(dir.path())
    })
    .await
    .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("expense-agent", "Expense agent")
        .await
        .unwrap();
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, expense_grant())
        .await
        .unwrap();

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "traces-test", "version": "1"}}});
    let response = post(&stack, &token, initialize, None).await;
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = response.text().await;
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "list_expenses", "arguments": {}}});
    let called = post(&stack, &token, call, Some(&session)).await;
    assert!(
        called
            .text()
            .await
            .unwrap()
            .contains("no expenses recorded")
    );

    // The spans of the call: one trace, the caller's, and the steps under the request.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let names = |seen: &[Value]| -> Vec<String> {
        seen.iter()
            .filter(|s| s["trace_id"] == TRACE)
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let complete = |seen: &[Value]| {
        let names = names(seen);
        ["judge", "mint", "upstream"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
            && names.iter().filter(|m| *m == "mcp.request").count() >= 2
    };
    while !complete(&seen) {
        let line = tokio::time::timeout_at(deadline, spans.next_line())
            .await
            .unwrap_or_else(|_| panic!("the call's spans arrive: {seen:?}"))
            .unwrap()
            .unwrap();
        seen.push(serde_json::from_str(&line).unwrap());
    }
    let of = |name: &str| -> Vec<Value> {
        seen.iter()
            .filter(|s| s["trace_id"] == TRACE && s["name"] == name)
            .cloned()
            .collect()
    };
    // Every request of the session is a server span that continues the caller's.
    let requests = of("mcp.request");
    assert!(requests.len() >= 2, "{seen:?}");
    assert!(requests.iter().all(|r| r["parent_span_id"] == CALLER_SPAN));
    assert!(
        requests
            .iter()
            .all(|r| r["service"] == "portcullis-gateway")
    );
    let request_ids: Vec<&Value> = requests.iter().map(|r| &r["span_id"]).collect();
    for step in ["verify", "judge", "mint", "upstream"] {
        let spans = of(step);
        assert!(!spans.is_empty(), "a {step} span: {seen:?}");
        assert!(
            spans
                .iter()
                .all(|s| request_ids.contains(&&s["parent_span_id"])),
            "{step} is a step of a request: {seen:?}"
        );
    }

    // The MCP server was handed the trace, from the upstream call's span.
    let upstream_ids: Vec<String> = of("upstream")
        .iter()
        .map(|s| s["span_id"].as_str().unwrap().to_owned())
        .collect();
    let call_seen = stack
        .expenses
        .seen_requests()
        .into_iter()
        .find(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .expect("the upstream saw the call");
    let traceparent = call_seen.traceparent.expect("a traceparent upstream");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], TRACE, "{traceparent}");
    assert!(
        upstream_ids.iter().any(|id| id == parts[2]),
        "{traceparent}"
    );
    // And in the message itself (SEP-414 `params._meta`), from the request's span.
    let in_meta = call_seen.meta_traceparent.expect("a traceparent in _meta");
    let parts: Vec<&str> = in_meta.split('-').collect();
    assert_eq!(parts[1], TRACE, "{in_meta}");
    let request_span_ids: Vec<&str> = requests
        .iter()
        .map(|r| r["span_id"].as_str().unwrap())
        .collect();
    assert!(request_span_ids.contains(&parts[2]), "{in_meta}");

    // And the decision names the trace.
    let log = std::fs::read_to_string(audit_dir.join("decisions.jsonl")).unwrap();
    let decision: Value = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|d| d["target"] == "list_expenses")
        .expect("the call's decision");
    assert_eq!(decision["trace_id"], TRACE, "{decision}");
}
