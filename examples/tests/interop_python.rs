//! Interop with the official MCP Python SDK client (`examples/interop/python_oauth_client.py`):
//! from a bare 401 at the gateway, the SDK discovers the issuer (RFC 9728 → RFC 8414),
//! registers itself (RFC 7591), runs authorization code + PKCE at the issuer (the script
//! approves the consent page as the person would), and calls tools through the gateway.
//!
//! The SDK lives in `.tools/py-mcp` (`scripts/test.sh` installs it). Without it this test says
//! so and passes, unless `PORTCULLIS_REQUIRE_INTEROP` is set, as `scripts/test.sh` does.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_examples::everything::Everything;
use portcullis_examples::interop::{Calls, tools_from_env};
use portcullis_examples::stack::{Stack, StackOptions};
use portcullis_issuer::{StorageOptions, users};
use portcullis_policy::Constraints;
use serde_json::{Value, json};

const PASSWORD: &str = "interop-password-123";
/// The SDK's protocol modes: the 2025 handshake, negotiation, and 2026-07-28 only.
const MODES: [&str; 3] = ["legacy", "auto", "2026-07-28"];

fn python() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/py-mcp/bin/python");
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
        "the MCP Python SDK is not installed in .tools/py-mcp (run ./scripts/test.sh)"
    );
    eprintln!("skipping: the MCP Python SDK is not installed in .tools/py-mcp");
    None
}

/// Creates alice in the built-in user store, allowed `tools` at `resource`.
async fn create_alice(dir: &std::path::Path, resource: &str, tools: Value) {
    let db = portcullis_issuer::open_database(&StorageOptions {
        data_dir: dir.to_owned(),
        database_url: None,
        key_encryption_secret: None,
    })
    .await
    .unwrap();
    let allowance =
        Constraints::from_authorization_details(&[json!({"type": "mcp_tools", "tools": tools})])
            .unwrap();
    users::create(
        &db,
        users::NewUser {
            username: "alice",
            password: PASSWORD,
            resources: vec![resource.to_owned()],
            allowance,
            operator: false,
        },
        portcullis_issuer::now(),
    )
    .await
    .unwrap();
}

async fn run_client(python: &PathBuf, url: &str, mode: &str, calls: &Calls) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python_oauth_client.py");
    let mut run = tokio::process::Command::new(python);
    run.arg(script)
        .env("MCP_URL", url)
        .env("MCP_USERNAME", "alice")
        .env("MCP_PASSWORD", PASSWORD)
        .env("MCP_MODE", mode)
        .kill_on_drop(true);
    calls.apply(&mut run);
    let run = run.output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python client finished within two minutes")
        .expect("the Python client ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown when the test fails (the client logs with MCP_DEBUG=1).
    eprintln!("[{mode}] the Python client's stderr:\n{stderr}");
    assert!(
        output.status.success(),
        "[{mode}] the Python client failed:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("[{mode}] {e}: {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_signs_in_through_discovery_and_consent_then_calls_through_the_gateway() {
    let Some(python) = python() else { return };
    let dir = tempfile::TempDir::new().unwrap();
    let stack = Stack::start(&StackOptions::sqlite(dir.path()))
        .await
        .unwrap();
    create_alice(
        dir.path(),
        &stack.resource,
        json!(["expenses/list_expenses", "expenses/submit_expense"]),
    )
    .await;

    for mode in MODES {
        let seen = run_client(&python, &stack.resource, mode, &Calls::EXPENSES).await;
        let metrics = stack.gateway_metrics().await.unwrap();
        let requests: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("portcullis_gateway_requests_total"))
            .collect();
        assert_eq!(
            seen["authorization_urls"], 1,
            "[{mode}] {seen}\n{requests:#?}"
        );
        assert_eq!(seen["pkce_method"], "S256");
        assert_eq!(
            seen["resource"],
            stack.resource.as_str(),
            "RFC 8707 resource"
        );
        assert_eq!(
            seen["tools"],
            json!(["list_expenses", "submit_expense"]),
            "[{mode}] the list is filtered to what alice approved"
        );
        assert_eq!(seen["call_is_error"], false, "[{mode}] {seen}");
        let hidden = seen["hidden_call"].as_str().unwrap_or_default();
        assert!(hidden.starts_with("refused"), "[{mode}] {hidden}");
    }
    // The upstream saw alice's calls, made by the client that registered itself.
    let calls: Vec<_> = stack
        .expenses
        .seen_requests()
        .into_iter()
        .filter(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .collect();
    assert_eq!(
        calls.len(),
        MODES.len(),
        "one allowed call per mode; the hidden one never arrived"
    );
    for call in calls {
        assert_eq!(call.subject.as_deref(), Some("alice"));
        assert!(call.actors[0].starts_with("dyn-"), "{:?}", call.actors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_signs_in_and_reaches_server_everything_through_the_gateway() {
    let Some(python) = python() else { return };
    let Some([node, entry]) = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_EVERYTHING"]) else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let (everything, stack) = Everything::behind_gateway(&node, entry.as_ref(), dir.path())
        .await
        .unwrap();
    let resource = format!("{}/mcp/everything", stack.gateway_url);
    create_alice(
        dir.path(),
        &resource,
        json!(["everything/echo", "everything/get-sum"]),
    )
    .await;
    // server-everything speaks the 2025 protocol only: auto negotiates down to it.
    for mode in ["legacy", "auto"] {
        let seen = run_client(&python, &resource, mode, &Calls::EVERYTHING).await;
        assert_eq!(seen["resource"], resource.as_str(), "RFC 8707 resource");
        assert_eq!(
            seen["tools"],
            json!(["echo", "get-sum"]),
            "[{mode}] the list is filtered to what alice approved"
        );
        assert_eq!(seen["call_is_error"], false, "[{mode}] {seen}");
        let hidden = seen["hidden_call"].as_str().unwrap_or_default();
        assert!(hidden.starts_with("refused"), "[{mode}] {hidden}");
    }
    stack.stop();
    everything.stop().await;
}

/// MCP 2025-11-25 incremental consent: alice first gives the SDK's client `list_expenses`
/// only; its call of `submit_expense` meets `403 insufficient_scope` naming both tools; the
/// SDK sends alice back through consent for exactly that scope and retries, and the call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_asks_for_more_consent_when_the_gateway_names_the_missing_scope() {
    let Some(python) = python() else { return };
    let dir = tempfile::TempDir::new().unwrap();
    let options = StackOptions {
        expenses_settings: vec!["incremental_consent: true".into()],
        ..StackOptions::sqlite(dir.path())
    };
    let stack = Stack::start(&options).await.unwrap();
    create_alice(
        dir.path(),
        &stack.resource,
        json!(["expenses/list_expenses", "expenses/submit_expense"]),
    )
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python_oauth_client.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("MCP_URL", &stack.resource)
        .env("MCP_USERNAME", "alice")
        .env("MCP_PASSWORD", PASSWORD)
        .env("MCP_MODE", "legacy")
        .env("MCP_ALLOWED_TOOL", "list_expenses")
        .env("MCP_HIDDEN_TOOL", "")
        .env("MCP_FIRST_TICK", "expenses/list_expenses")
        .env("MCP_STEP_UP_TOOL", "submit_expense")
        .env("MCP_STEP_UP_ARGS", r#"{"amount": 12, "category": "meal"}"#)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the Python client finished within two minutes")
        .expect("the Python client ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stderr}"
    );
    let seen: Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        seen["tools"],
        json!(["list_expenses"]),
        "first: what alice ticked"
    );
    assert_eq!(seen["authorization_urls"], 2, "one more consent: {seen}");
    let asked = seen["scopes"][1].as_str().unwrap_or_default();
    for scope in [
        "mcp:tools:expenses/list_expenses",
        "mcp:tools:expenses/submit_expense",
    ] {
        assert!(asked.split(' ').any(|s| s == scope), "{asked}");
    }
    assert_eq!(seen["step_up_call_is_error"], false, "{seen}");
    assert_eq!(
        seen["allowed_after_step_up_is_error"], false,
        "nothing else narrowed"
    );
    let expenses = stack.expenses.expenses();
    assert_eq!(expenses.len(), 1);
    assert_eq!(
        (expenses[0].amount, expenses[0].user.as_str()),
        (12.0, "alice")
    );
}
