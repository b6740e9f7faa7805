//! Interop with the official MCP TypeScript SDK client
//! (`examples/interop/typescript_client.mjs`): a delegation token from the issuer, then
//! `tools/list` (filtered), a permitted call and a refused one through the gateway, in the
//! SDK's `legacy` and `auto` version negotiation.
//!
//! Node ≥ 22 and the SDK live in `.tools/` (`scripts/test.sh` installs them and names them in
//! `PORTCULLIS_NODE` and `PORTCULLIS_TS_CLIENT`). Without them this test says so and passes,
//! unless `PORTCULLIS_REQUIRE_INTEROP` is set, as `scripts/test.sh` does.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_examples::agent::{IssuerClient, expense_grant};
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};

fn node_and_sdk() -> Option<(String, String)> {
    match (
        std::env::var("PORTCULLIS_NODE"),
        std::env::var("PORTCULLIS_TS_CLIENT"),
    ) {
        (Ok(node), Ok(sdk)) => Some((node, sdk)),
        _ => {
            assert!(
                std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
                "PORTCULLIS_NODE and PORTCULLIS_TS_CLIENT are not set (run ./scripts/test.sh)"
            );
            eprintln!("skipping: Node and the MCP TypeScript SDK are not set up");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_calls_through_the_gateway_with_a_delegation_token() {
    let Some((node, sdk)) = node_and_sdk() else {
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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/typescript_client.mjs");
    for mode in ["legacy", "auto"] {
        let run = tokio::process::Command::new(&node)
            .arg(&script)
            .env("MCP_URL", &stack.resource)
            .env("MCP_TOKEN", &token)
            .env("MCP_MODE", mode)
            .env("MCP_CLIENT_MODULE", &sdk)
            .kill_on_drop(true)
            .output();
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
        assert_eq!(
            seen["tools"],
            json!(["list_expenses", "submit_expense"]),
            "[{mode}] filtered to the grant: {seen}"
        );
        assert_eq!(seen["callIsError"], false, "[{mode}] {seen}");
        let hidden = seen["hiddenCall"].as_str().unwrap_or_default();
        assert!(hidden.starts_with("refused: -31001"), "[{mode}] {hidden}");
    }
    let calls = stack
        .expenses
        .seen_requests()
        .into_iter()
        .filter(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .count();
    assert_eq!(calls, 2, "the refused calls never reached the upstream");
}
