//! Hot reload with real parts: an edited configuration file brings a new upstream into service
//! while a streaming call through the old one runs on; an invalid file changes nothing; SIGHUP
//! reloads even when the file is unchanged.

use std::time::{Duration, Instant};

use portcullis_examples::agent::{IssuerClient, connect, expense_grant};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status of an unauthenticated POST to an upstream's gateway endpoint: 401 when the
/// gateway serves that upstream, 404 when it does not.
async fn status_of(url: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn reloads(stack: &Stack, outcome: &str) -> u64 {
    let metrics = stack.gateway_metrics().await.unwrap();
    let prefix = format!("portcullis_gateway_config_reloads_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_configuration_adds_an_upstream_without_dropping_live_streams() {
    let dir = tempfile::TempDir::new().unwrap();
    let stack = Stack::start(&StackOptions::sqlite(dir.path()))
        .await
        .unwrap();
    let fixture = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fixture_url = format!("http://{}/mcp", fixture.local_addr().unwrap());
    tokio::spawn(portcullis_examples::conformance::serve(fixture, None));
    let added = format!("{}/mcp/conformance", stack.gateway_url);
    assert_eq!(status_of(&added).await, 404);

    // A report streams for three seconds through the expenses upstream.
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("reporter", "Reporter").await.unwrap();
    let mut grant = expense_grant();
    grant[0]["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!("expenses/slow_report"));
    let (_, token_with_report) = issuer
        .delegation(&agent, "alice", &stack.resource, grant)
        .await
        .unwrap();
    let session = connect(&stack.resource, &token_with_report).await.unwrap();
    let peer = session.peer().clone();
    let report = tokio::spawn(async move {
        peer.call_tool(
            CallToolRequestParams::new("slow_report")
                .with_arguments(json!({"seconds": 3}).as_object().unwrap().clone()),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The operator adds an upstream while it streams.
    let original = std::fs::read_to_string(&stack.gateway_config).unwrap();
    let with_fixture = original.replacen(
        "upstreams:\n",
        &format!("upstreams:\n  - {{name: conformance, url: '{fixture_url}'}}\n"),
        1,
    );
    std::fs::write(&stack.gateway_config, &with_fixture).unwrap();
    eventually("the new upstream is served", async || {
        status_of(&added).await == 401
    })
    .await;
    let metadata = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/mcp/conformance",
        stack.gateway_url
    ))
    .await
    .unwrap();
    assert_eq!(
        metadata.status().as_u16(),
        200,
        "its discovery document too"
    );

    let finished = tokio::time::timeout(Duration::from_secs(10), report)
        .await
        .expect("the report finishes")
        .unwrap()
        .expect("the stream opened before the reload ran to its end");
    assert_ne!(finished.is_error, Some(true), "{finished:?}");
    assert_eq!(reloads(&stack, "applied").await, 1);

    // A broken file is refused as a whole; the running table stays.
    std::fs::write(
        &stack.gateway_config,
        with_fixture.replace(&fixture_url, "ftp://127.0.0.1:1/mcp"),
    )
    .unwrap();
    eventually("the invalid file is noticed", async || {
        reloads(&stack, "invalid").await == 1
    })
    .await;
    assert_eq!(status_of(&added).await, 401, "still served");
    assert_eq!(status_of(&stack.resource).await, 401, "still served");

    // SIGHUP reloads on demand: the file, fixed by the operator, without the fixture again.
    std::fs::write(&stack.gateway_config, &original).unwrap();
    eventually("the fixed file is applied", async || {
        status_of(&added).await == 404
    })
    .await;
    let applied = reloads(&stack, "applied").await;
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    eventually("SIGHUP reloads the unchanged file", async || {
        reloads(&stack, "applied").await == applied + 1
    })
    .await;
    stack.stop();
}
