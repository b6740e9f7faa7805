//! `portcullis-demo`: the whole stack on this machine, and an agent that tries its luck.
//!
//! Run it with `./scripts/demo.sh` (or `cargo run -p portcullis-examples --bin portcullis-demo`).
//! It starts the issuer (SQLite in `.portcullis-demo/`), the expenses MCP server and the gateway
//! on loopback ports, then narrates: a user grants an agent bounded authority, the agent
//! exchanges it for a delegation token, and calls tools through the gateway — some allowed,
//! some denied, with the reasons. `--keep-running` leaves the stack up afterwards, with a token
//! to try other MCP clients against it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use portcullis_examples::agent::{DpopKey, IssuerClient, McpSession, connect, expense_grant};
use portcullis_examples::person::{Person, create_user, make_operator};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

/// Run the Portcullis stack (issuer, gateway, an example MCP server) and narrate an agent's
/// allowed and denied tool calls.
#[derive(Debug, Parser)]
#[command(name = "portcullis-demo", version, about)]
struct Cli {
    /// Where the issuer keeps its SQLite database and development key-encryption secret.
    #[arg(long, default_value = ".portcullis-demo")]
    data_dir: PathBuf,
    /// Use this PostgreSQL URL instead of SQLite.
    #[arg(long, env = "PORTCULLIS_DATABASE_URL")]
    database_url: Option<String>,
    /// Keep the stack running after the narration, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn decode(token: &str) -> Value {
    use base64::Engine;
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// Makes a call and says what came of it; the error's `data` when it was refused.
/// Alice's password at the issuer's pages (the approval page, her account, the console).
const PASSWORD: &str = "demo-password-alice";

async fn try_call(
    session: &McpSession,
    tool: &str,
    arguments: Value,
) -> anyhow::Result<Option<Value>> {
    print!("   {tool} {arguments} -> ");
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    match session.call_tool(params).await {
        Ok(result) => {
            let text = result
                .content
                .first()
                .and_then(|c| c.as_text())
                .map_or_else(String::new, |t| t.text.clone());
            println!("ALLOWED: {text}");
            Ok(None)
        }
        Err(ServiceError::McpError(error)) => {
            let reason = error
                .data
                .as_ref()
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            let verdict = if reason == "approval_required" {
                "HELD for a person's approval"
            } else {
                "DENIED by the gateway"
            };
            println!("{verdict} [{reason}]: {}", error.message);
            Ok(error.data)
        }
        Err(other) => Err(other).context("calling through the gateway"),
    }
}

/// Step 10: a call held for alice's approval, approved on the issuer's page, run once.
async fn approvals(
    stack: &Stack,
    data_dir: &std::path::Path,
    issuer: &IssuerClient,
    agent: &portcullis_examples::agent::ClientCredentials,
) -> anyhow::Result<()> {
    create_user(data_dir, "alice", PASSWORD, &stack.resource).await?;
    let mut grant = expense_grant();
    grant[0]["approval"] =
        json!([{"tool": "expenses/submit_expense", "when": [{"pointer": "/amount", "min": 200}]}]);
    let (_, token) = issuer
        .delegation(agent, "alice", &stack.resource, grant)
        .await?;
    let session = connect(&stack.resource, &token).await?;
    let large = json!({"amount": 300, "category": "travel"});
    try_call(
        &session,
        "submit_expense",
        json!({"amount": 150, "category": "travel"}),
    )
    .await?;
    let held = try_call(&session, "submit_expense", large.clone()).await?;
    let url = held
        .as_ref()
        .and_then(|data| data["approval_url"].as_str())
        .context("the 300 was not held for approval")?;
    let id = url.rsplit('/').next().unwrap_or_default();
    let alice = Person::sign_in(&stack.issuer_url, "alice", PASSWORD).await?;
    alice.answer(id, true).await?;
    println!("   alice signs in at {url}, reads the exact call, and approves it");
    try_call(&session, "submit_expense", large.clone()).await?;
    println!(
        "   the approval was spent on that one call; the same call again waits for a new one:"
    );
    try_call(&session, "submit_expense", large).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    portcullis_examples::init_logging("warn,portcullis_issuer=error,rmcp=off");

    let stack = Stack::start(&StackOptions {
        database_url: cli.database_url.clone(),
        // The gateway ships its decisions to the issuer, with the token it also asks about
        // approvals with (step 10).
        audit_dir: Some(cli.data_dir.join("gateway-audit")),
        ..StackOptions::sqlite(&cli.data_dir)
    })
    .await?;
    println!("Portcullis demo: the whole stack on loopback");
    println!(
        "   issuer       {}  (storage: {})",
        stack.issuer_url,
        match &cli.database_url {
            Some(_) => "PostgreSQL".to_owned(),
            None => format!("SQLite in {}", cli.data_dir.display()),
        }
    );
    println!(
        "   MCP server   {}  (expenses: submit_expense, list_expenses, attach_receipt, delete_all_expenses, slow_report)",
        stack.upstream_url
    );
    println!(
        "   gateway      {}  (metrics at {}/metrics)",
        stack.resource, stack.gateway_admin_url
    );

    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let suffix = &portcullis_examples::random_secret()[..6];
    let agent_id = format!("expense-agent-{suffix}");
    let sub_id = format!("receipts-agent-{suffix}");

    step(1, "The operator registers two agents as OAuth clients.");
    let agent = issuer.register_agent(&agent_id, "Expense agent").await?;
    let sub_agent = issuer.register_agent(&sub_id, "Receipts agent").await?;
    println!("   {agent_id}, {sub_id} (secrets shown once, stored only as hashes)");

    step(
        2,
        "alice grants the expense agent: submit_expense up to 500 in travel or meal, list_expenses; one re-delegation.",
    );
    let grant_id = issuer
        .grant("alice", &agent_id, &stack.resource, expense_grant())
        .await?;
    println!("   grant {grant_id}");

    step(
        3,
        "The agent exchanges alice's grant token for a delegation token (RFC 8693).",
    );
    let subject = issuer.subject_token(&grant_id).await?;
    let actor = issuer.client_token(&agent).await?;
    let token = issuer
        .exchange(&agent, &subject, &actor, &stack.resource, None)
        .await??;
    let claims = decode(&token);
    println!(
        "   sub={} act={} aud={} expires in {}s",
        claims["sub"],
        claims["act"],
        claims["aud"],
        claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0)
    );

    step(4, "Through the gateway, the agent asks which tools exist.");
    let session = connect(&stack.resource, &token).await?;
    let tools: Vec<String> = session
        .list_all_tools()
        .await?
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    println!(
        "   it sees {tools:?}; attach_receipt, delete_all_expenses and slow_report are hidden"
    );

    step(
        5,
        "The agent makes calls; the gateway judges each before it reaches the server.",
    );
    try_call(
        &session,
        "submit_expense",
        json!({"amount": 120, "category": "travel"}),
    )
    .await?;
    try_call(
        &session,
        "submit_expense",
        json!({"amount": 620, "category": "travel"}),
    )
    .await?;
    try_call(
        &session,
        "submit_expense",
        json!({"amount": 45, "category": "jewelry"}),
    )
    .await?;
    try_call(&session, "delete_all_expenses", json!({})).await?;

    step(
        6,
        "The agent re-delegates to a receipts agent, asking for at most 100 per expense.",
    );
    let sub_actor = issuer.client_token(&sub_agent).await?;
    let tighter = json!([{"type": "mcp_tools", "tools": ["expenses/submit_expense"],
        "limits": [{"tool": "expenses/submit_expense", "pointer": "/amount", "max": 100}]}]);
    let sub_token = issuer
        .exchange(&agent, &token, &sub_actor, &stack.resource, Some(&tighter))
        .await??;
    println!("   act={}", decode(&sub_token)["act"]);
    let sub_session = connect(&stack.resource, &sub_token).await?;
    try_call(
        &sub_session,
        "submit_expense",
        json!({"amount": 300, "category": "meal"}),
    )
    .await?;
    try_call(
        &sub_session,
        "submit_expense",
        json!({"amount": 80, "category": "meal"}),
    )
    .await?;
    let wider = json!([{"type": "mcp_tools", "tools": ["expenses/*"]}]);
    let refused = issuer
        .exchange(&agent, &token, &sub_actor, &stack.resource, Some(&wider))
        .await?;
    if let Err(e) = refused {
        println!(
            "   asking the issuer for expenses/* instead is refused: {} ({})",
            e.error, e.description
        );
    }

    step(7, "What the MCP server itself saw.");
    let seen = stack.expenses.seen_requests();
    let calls = seen
        .iter()
        .filter(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .count();
    let agent_tokens = seen
        .iter()
        .filter(|r| {
            r.bearer.as_deref() == Some(token.as_str())
                || r.bearer.as_deref() == Some(sub_token.as_str())
        })
        .count();
    println!(
        "   {} HTTP requests, {calls} tool calls (the denied ones never arrived); every token it \
         received was minted by the gateway for it alone ({} carried an agent's token)",
        seen.len(),
        agent_tokens
    );
    for expense in stack.expenses.expenses() {
        println!(
            "   expense #{}: {} {} for {} via {}",
            expense.id,
            expense.amount,
            expense.category,
            expense.user,
            expense.actors.join(" via ")
        );
    }
    session.cancel().await?;
    sub_session.cancel().await?;

    step(
        8,
        "The kill switch: alice also lets the agent run a slow report; mid-stream, the operator revokes that grant.",
    );
    let (report_grant, report_token) = issuer
        .delegation(
            &agent,
            "alice",
            &stack.resource,
            json!([{"type": "mcp_tools", "tools": ["expenses/slow_report"]}]),
        )
        .await?;
    let report_session = connect(&stack.resource, &report_token).await?;
    let peer = report_session.peer().clone();
    let report = tokio::spawn(async move {
        peer.call_tool(
            CallToolRequestParams::new("slow_report").with_arguments(
                json!({"seconds": 10})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    println!("   slow_report (10 s) is streaming; revoking grant {report_grant} at the issuer");
    let revoked_at = std::time::Instant::now();
    let seq = issuer.revoke("grant", &report_grant).await?;
    let outcome = report.await?;
    let elapsed = revoked_at.elapsed();
    match outcome {
        Err(ServiceError::McpError(error)) => println!(
            "   the call ended {} ms after the revocation with: {} (code {}, revocation {seq})",
            elapsed.as_millis(),
            error.message,
            error.code.0
        ),
        other => println!("   unexpected outcome: {other:?}"),
    }
    for _ in 0..20 {
        if stack.expenses.cancelled_reports() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let probe = reqwest::Client::new()
        .post(&stack.resource)
        .bearer_auth(&report_token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await?;
    let status = probe.status();
    let answer: Value = probe.json().await.unwrap_or(Value::Null);
    println!(
        "   the MCP server cancelled {} report(s); the next request with that token gets {status}: {}",
        stack.expenses.cancelled_reports(),
        answer["error"]["message"]
    );

    step(
        9,
        "A stolen token is worth nothing without the agent's key: with DPoP the agent binds its tokens to a key of its own.",
    );
    let key = DpopKey::generate();
    let client = key
        .client_token(&issuer, &agent)
        .await?
        .map_err(|e| anyhow::anyhow!("client token: {e:?}"))?;
    let actor = client["access_token"].as_str().unwrap_or_default();
    let grant = issuer
        .grant("alice", &agent.id, &stack.resource, expense_grant())
        .await?;
    let subject = issuer.subject_token(&grant).await?;
    let bound = issuer
        .exchange(&agent, &subject, actor, &stack.resource, None)
        .await?
        .map_err(|e| anyhow::anyhow!("exchange: {e:?}"))?;
    println!(
        "   the agent's token is bound to its key: cnf={}",
        decode(&bound)["cnf"]
    );
    let thief = DpopKey::generate();
    for (who, authorization, proof) in [
        (
            "the agent, with a proof by its key",
            format!("DPoP {bound}"),
            Some(key.proof(&stack.resource, Some(&bound))),
        ),
        (
            "a thief replaying the token with a key of its own",
            format!("DPoP {bound}"),
            Some(thief.proof(&stack.resource, Some(&bound))),
        ),
        (
            "a thief sending it as a bearer token",
            format!("Bearer {bound}"),
            None,
        ),
        (
            "the agent again, with a fresh proof",
            format!("DPoP {bound}"),
            Some(key.proof(&stack.resource, Some(&bound))),
        ),
    ] {
        let mut request = reqwest::Client::new()
            .post(&stack.resource)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"demo","version":"1"}}}"#);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let reason = answer["error"]["data"]["reason"].as_str().unwrap_or("");
        println!("   {who}: {status} {reason}");
    }

    step(
        10,
        "Some calls wait for a person: alice's grant now asks for her approval of any expense of 200 or more.",
    );
    if cli.database_url.is_some() {
        println!("   (skipped: the demo creates alice's sign-in in its SQLite store)");
    } else {
        approvals(&stack, &cli.data_dir, &issuer, &agent).await?;
    }

    if cli.keep_running {
        println!(
            "\nThe stack keeps running; Ctrl-C stops it. A delegation token for alice's grant (5 minutes):"
        );
        println!(
            "   curl -H 'Authorization: Bearer {token}' -H 'Accept: application/json, text/event-stream' \\"
        );
        println!(
            "        -H 'Content-Type: application/json' {} -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}'",
            stack.resource
        );
        if cli.database_url.is_none() {
            // In the demo, alice also watches the fleet: she is made an operator.
            make_operator(&cli.data_dir, "alice").await?;
            let issuer = &stack.issuer_url;
            println!(
                "\nSign in as alice (password {PASSWORD:?}) at {issuer}/console for the live \
                 decision stream, who may act for whom, revocations and freezes; \
                 {issuer}/account for her own grants; the admin API's docs are at {issuer}/docs."
            );
        }
        tokio::signal::ctrl_c().await?;
    }
    stack.stop();
    Ok(())
}
