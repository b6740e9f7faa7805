//! Interop with the official MCP TypeScript SDK client
//! (`examples/interop/typescript_client.mjs`): a delegation token from the issuer, then
//! `tools/list` (filtered), a permitted call and a refused one through the gateway, in the
//! SDK's `legacy` and `auto` version negotiation, in front of the rmcp expenses server, of
//! `@modelcontextprotocol/server-everything` (the TypeScript reference server), and of a fleet
//! of both.
//!
//! Node ≥ 22, the SDK and server-everything live in `.tools/` (`scripts/test.sh` installs them
//! and names them in `PORTCULLIS_NODE`, `PORTCULLIS_TS_CLIENT` and `PORTCULLIS_EVERYTHING`).
//! Without them these tests say so and pass, unless `PORTCULLIS_REQUIRE_INTEROP` is set, as
//! `scripts/test.sh` does.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_examples::agent::{IssuerClient, expense_grant};
use portcullis_examples::everything::Everything;
use portcullis_examples::interop::{Calls, tools_from_env};
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};

/// Runs the client in `mode` and returns what it saw; asserts the grant was applied.
async fn run_client(
    (node, sdk): (&str, &str),
    url: &str,
    token: &str,
    mode: &str,
    calls: &Calls,
) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/typescript_client.mjs");
    let mut run = tokio::process::Command::new(node);
    run.arg(&script)
        .env("MCP_URL", url)
        .env("MCP_TOKEN", token)
        .env("MCP_MODE", mode)
        .env("MCP_CLIENT_MODULE", sdk)
        .kill_on_drop(true);
    calls.apply(&mut run);
    let run = run.output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the TypeScript client finished within a minute")
        .expect("node ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "[{mode}] the TypeScript client failed:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("[{mode}] {e}: {stdout}\n{stderr}"));
    assert_eq!(seen["callIsError"], false, "[{mode}] {seen}");
    let hidden = seen["hiddenCall"].as_str().unwrap_or_default();
    assert!(hidden.starts_with("refused: -31001"), "[{mode}] {hidden}");
    seen
}

/// A delegation token for the TypeScript agent at `/mcp/{endpoint}`, granting `tools`;
/// returns the endpoint's URL and the token.
async fn agent_token(stack: &Stack, endpoint: &str, tools: &[&str]) -> (String, String) {
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("ts-agent", "TypeScript agent")
        .await
        .unwrap();
    let resource = format!("{}/mcp/{endpoint}", stack.gateway_url);
    let grant = json!([{"type": "mcp_tools", "tools": tools, "max_depth": 0}]);
    let (_, token) = issuer
        .delegation(&agent, "alice", &resource, grant)
        .await
        .unwrap();
    (resource, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_calls_through_the_gateway_with_a_delegation_token() {
    let Some([node, sdk]) = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_TS_CLIENT"]) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let stack = Stack::start(&StackOptions::sqlite(dir.path()))
        .await
        .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("ts-agent", "TypeScript agent")
        .await
        .unwrap();
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, expense_grant())
        .await
        .unwrap();
    for mode in ["legacy", "auto"] {
        let seen = run_client(
            (&node, &sdk),
            &stack.resource,
            &token,
            mode,
            &Calls::EXPENSES,
        )
        .await;
        assert_eq!(
            seen["tools"],
            json!(["list_expenses", "submit_expense"]),
            "[{mode}] filtered to the grant: {seen}"
        );
    }
    let calls = stack
        .expenses
        .seen_requests()
        .into_iter()
        .filter(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .count();
    assert_eq!(calls, 2, "the refused calls never reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_reaches_server_everything_through_the_gateway() {
    let Some([node, sdk, entry]) = tools_from_env([
        "PORTCULLIS_NODE",
        "PORTCULLIS_TS_CLIENT",
        "PORTCULLIS_EVERYTHING",
    ]) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let (everything, stack) = Everything::behind_gateway(&node, entry.as_ref(), dir.path())
        .await
        .unwrap();
    let (resource, token) = agent_token(
        &stack,
        "everything",
        &["everything/echo", "everything/get-sum"],
    )
    .await;
    for mode in ["legacy", "auto"] {
        let seen = run_client((&node, &sdk), &resource, &token, mode, &Calls::EVERYTHING).await;
        assert_eq!(
            seen["tools"],
            json!(["echo", "get-sum"]),
            "[{mode}] filtered to the grant: {seen}"
        );
    }
    stack.stop();
    everything.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_uses_a_fleet_of_server_everything_and_the_rmcp_server() {
    let Some([node, sdk, entry]) = tools_from_env([
        "PORTCULLIS_NODE",
        "PORTCULLIS_TS_CLIENT",
        "PORTCULLIS_EVERYTHING",
    ]) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let everything = Everything::start(&node, entry.as_ref()).await.unwrap();
    let mut options = StackOptions::with_upstream(dir.path(), "everything", &everything.url);
    options.gateway_extra_yaml = "fleets: [{name: desk, members: [everything, expenses]}]\n".into();
    let stack = Stack::start(&options).await.unwrap();
    let (resource, token) = agent_token(
        &stack,
        "desk",
        &["everything/echo", "expenses/list_expenses"],
    )
    .await;
    let calls = Calls {
        allowed: "everything__echo",
        arguments: Calls::EVERYTHING.arguments,
        hidden: "everything__get-env",
    };
    for mode in ["legacy", "auto"] {
        let seen = run_client((&node, &sdk), &resource, &token, mode, &calls).await;
        assert_eq!(
            seen["tools"],
            json!(["everything__echo", "expenses__list_expenses"]),
            "[{mode}] both members' granted tools, namespaced: {seen}"
        );
    }
    stack.stop();
    everything.stop().await;
}
