//! Step-up approvals end to end: a grant term sends some calls to a person; the gateway holds
//! them and points the agent's client at the issuer's approval page; the person approves
//! exactly that call; the retry runs once. The upstream's own ledger says what ran.
//!
//! The acceptance test drives the official Python SDK client and a real Chromium; the others
//! answer the page over HTTP as a browser would ([`Person`]), and call with rmcp's client,
//! which declares no URL elicitation (so it gets the gateway's own error with the URL).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::Locator;
use portcullis_examples::agent::{
    self, ClientCredentials, IssuerClient, McpSession, expense_grant,
};
use portcullis_examples::browser::{self, Browser};
use portcullis_examples::person::{Person, create_user, make_operator};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const PASSWORD: &str = "approval-password-123";

/// The demo's grant with one more term: submitting 200 or more needs the user's approval.
/// The agent may also run a slow report, a call that streams.
fn grant_with_approval(term: Value) -> Value {
    let mut grant = expense_grant();
    grant[0]["approval"] = json!([term]);
    grant[0]["tools"]
        .as_array_mut()
        .unwrap()
        .push(json!("expenses/slow_report"));
    grant
}

fn over_200() -> Value {
    json!({"tool": "expenses/submit_expense", "when": [{"pointer": "/amount", "min": 200}]})
}

struct Setup {
    stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    grant: String,
    token: String,
    _dir: tempfile::TempDir,
}

/// A stack that ships decisions (and so asks about approvals), people alice, bob and carol,
/// and alice's grant to an expense agent with `term`.
async fn setup(term: Value) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let options = StackOptions {
        audit_dir: Some(dir.path().join("audit")),
        gateway_extra_yaml: portcullis_examples::replica::replica_keys_yaml(dir.path()).unwrap(),
        ..StackOptions::sqlite(dir.path())
    };
    let stack = Stack::start(&options).await.unwrap();
    for person in ["alice", "bob", "carol"] {
        create_user(dir.path(), person, PASSWORD, &stack.resource)
            .await
            .unwrap();
    }
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("expense-agent", "Expense agent")
        .await
        .unwrap();
    let (grant, token) = issuer
        .delegation(&agent, "alice", &stack.resource, grant_with_approval(term))
        .await
        .unwrap();
    Setup {
        stack,
        issuer,
        agent,
        grant,
        token,
        _dir: dir,
    }
}

/// A tool call's outcome: the text, or the JSON-RPC error's code and data.
async fn call(session: &McpSession, amount: Value) -> Result<String, (i32, Value)> {
    call_with(session, json!({"amount": amount, "category": "travel"})).await
}

async fn call_with(session: &McpSession, arguments: Value) -> Result<String, (i32, Value)> {
    let params = CallToolRequestParams::new("submit_expense")
        .with_arguments(arguments.as_object().unwrap().clone());
    match session.call_tool(params).await {
        Ok(result) => Ok(format!("{:?}", result.content)),
        Err(rmcp::ServiceError::McpError(error)) => {
            Err((error.code.0, error.data.unwrap_or(Value::Null)))
        }
        Err(other) => panic!("the call failed outside JSON-RPC: {other}"),
    }
}

/// The approval request an error names, from its `approval_url`.
fn approval_id(data: &Value) -> String {
    let url = data["approval_url"].as_str().expect("an approval_url");
    url.rsplit('/').next().unwrap().to_owned()
}

fn amounts(stack: &Stack) -> Vec<f64> {
    stack.expenses.expenses().iter().map(|e| e.amount).collect()
}

#[tokio::test]
async fn a_held_call_runs_once_after_approval_and_every_other_call_needs_its_own() {
    let s = setup(over_200()).await;
    let session = agent::connect(&s.stack.resource, &s.token).await.unwrap();

    assert!(
        call(&session, json!(150)).await.is_ok(),
        "under the threshold"
    );
    let (code, data) = call(&session, json!(300)).await.unwrap_err();
    assert_eq!(
        (code, data["reason"].as_str()),
        (-31011, Some("approval_required"))
    );
    assert!(
        data.get("elicitations").is_none(),
        "rmcp's client declared no URL elicitation"
    );
    assert_eq!(
        amounts(&s.stack),
        [150.0],
        "the held call never reached the upstream"
    );

    // The same call again, before anyone answered: the same request, not a second one.
    let (_, again) = call(&session, json!(300)).await.unwrap_err();
    let id = approval_id(&data);
    assert_eq!(approval_id(&again), id);

    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    let page = alice.page(&id).await.unwrap();
    assert!(
        page.contains("submit_expense") && page.contains("300") && page.contains("expense-agent")
    );
    let answered = alice.answer(&id, true).await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.page);

    // The same arguments in another order are the same call.
    let reordered = call_with(&session, json!({"category": "travel", "amount": 300})).await;
    assert!(reordered.is_ok(), "{reordered:?}");
    assert_eq!(amounts(&s.stack), [150.0, 300.0]);

    // Spent: the same call again is held again, under a new request.
    let (code, replay) = call(&session, json!(300)).await.unwrap_err();
    assert_eq!(code, -31011);
    assert_ne!(approval_id(&replay), id);
    // Other arguments need their own approval.
    let (_, other) = call(&session, json!(301)).await.unwrap_err();
    assert_ne!(approval_id(&other), approval_id(&replay));
    assert_eq!(amounts(&s.stack), [150.0, 300.0]);

    let metrics = s.stack.gateway_metrics().await.unwrap();
    assert!(
        metrics.contains(
            r#"portcullis_gateway_approvals_total{outcome="spent",upstream="expenses"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn two_replicas_retrying_at_once_spend_one_approval_once() {
    let s = setup(over_200()).await;
    let dir = tempfile::tempdir().unwrap();
    let replica = s
        .stack
        .start_replica(&format!(
            "audit: {{dir: '{}', gateway_id: gw-replica, ingest_token_file: '{}'}}\n",
            dir.path().display(),
            s._dir.path().join("audit-ingest-token").display()
        ))
        .await
        .unwrap();
    let here = agent::connect(&s.stack.resource, &s.token).await.unwrap();
    let there = agent::connect(&replica.resource, &s.token).await.unwrap();
    let (_, data) = call(&here, json!(300)).await.unwrap_err();
    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    alice.answer(&approval_id(&data), true).await.unwrap();

    let (a, b) = tokio::join!(call(&here, json!(300)), call(&there, json!(300)));
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "exactly one replica spends it: {a:?} {b:?}"
    );
    assert_eq!(amounts(&s.stack), [300.0]);
    // And the replica that lost, or either one later, holds the replay.
    let (code, _) = call(&there, json!(300)).await.unwrap_err();
    assert_eq!(code, -31011);
    assert_eq!(amounts(&s.stack), [300.0]);
}

#[tokio::test]
async fn four_eyes_need_the_user_and_a_named_second_person_never_the_user_twice() {
    // alice is named too: as the requester's own user she still counts only once.
    let term = json!({"tool": "expenses/submit_expense", "four_eyes": ["alice", "carol"]});
    let s = setup(term).await;
    let session = agent::connect(&s.stack.resource, &s.token).await.unwrap();
    let (_, data) = call(&session, json!(20)).await.unwrap_err();
    let id = approval_id(&data);

    let bob = Person::sign_in(&s.stack.issuer_url, "bob", PASSWORD)
        .await
        .unwrap();
    let page = bob.page(&id).await.unwrap();
    assert!(!page.contains("form_token"), "bob is offered no form");
    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(alice.answer(&id, true).await.unwrap().status, 200);
    assert!(
        call(&session, json!(20)).await.is_err(),
        "one approval of two"
    );
    let page = alice.page(&id).await.unwrap();
    assert!(
        !page.contains("form_token"),
        "alice cannot give the second approval"
    );

    let carol = Person::sign_in(&s.stack.issuer_url, "carol", PASSWORD)
        .await
        .unwrap();
    let answered = carol.answer(&id, true).await.unwrap();
    assert_eq!(answered.status, 200, "{}", answered.page);
    assert!(call(&session, json!(20)).await.is_ok());
    assert_eq!(amounts(&s.stack), [20.0]);
}

#[tokio::test]
async fn a_denied_call_is_told_so_on_retry_and_no_new_request_opens() {
    let s = setup(over_200()).await;
    let session = agent::connect(&s.stack.resource, &s.token).await.unwrap();
    let (_, data) = call(&session, json!(250)).await.unwrap_err();
    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        alice
            .answer(&approval_id(&data), false)
            .await
            .unwrap()
            .status,
        200
    );
    let (code, denied) = call(&session, json!(250)).await.unwrap_err();
    assert_eq!(
        (code, denied["reason"].as_str()),
        (-31001, Some("approval_denied"))
    );
    assert_eq!(
        denied["approval_id"].as_str(),
        Some(approval_id(&data).as_str())
    );
    assert!(amounts(&s.stack).is_empty());
}

#[tokio::test]
async fn revoking_the_grant_voids_what_is_open_and_unspent() {
    let s = setup(over_200()).await;
    let session = agent::connect(&s.stack.resource, &s.token).await.unwrap();
    let (_, approved) = call(&session, json!(400)).await.unwrap_err();
    let (_, open) = call(&session, json!(450)).await.unwrap_err();
    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    alice.answer(&approval_id(&approved), true).await.unwrap();

    s.issuer.revoke("grant", &s.grant).await.unwrap();
    assert!(
        alice
            .page(&approval_id(&approved))
            .await
            .unwrap()
            .contains("void")
    );
    let late = alice.page(&approval_id(&open)).await.unwrap();
    assert!(
        late.contains("void") && !late.contains("form_token"),
        "nothing left to answer"
    );
    assert!(amounts(&s.stack).is_empty());
}

#[tokio::test]
async fn an_approval_lapses_after_its_term() {
    let term = json!({"tool": "expenses/submit_expense", "valid_for": 1});
    let s = setup(term).await;
    let session = agent::connect(&s.stack.resource, &s.token).await.unwrap();
    let (_, data) = call(&session, json!(10)).await.unwrap_err();
    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    alice.answer(&approval_id(&data), true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (code, again) = call(&session, json!(10)).await.unwrap_err();
    assert_eq!(code, -31011, "expired: a new request");
    assert_ne!(approval_id(&again), approval_id(&data));
    assert!(
        alice
            .page(&approval_id(&data))
            .await
            .unwrap()
            .contains("expired")
    );
    assert!(amounts(&s.stack).is_empty());
}

#[tokio::test]
async fn a_sub_agent_keeps_its_parents_approval_terms() {
    let s = setup(over_200()).await;
    let helper = s.issuer.register_agent("helper", "Helper").await.unwrap();
    let actor = s.issuer.client_token(&helper).await.unwrap();
    // Naming looser terms is refused.
    let mut loosened = grant_with_approval(json!({"tool": "expenses/submit_expense",
        "when": [{"pointer": "/amount", "min": 450}]}));
    loosened[0]["max_depth"] = json!(0);
    let refused = s
        .issuer
        .exchange(
            &s.agent,
            &s.token,
            &actor,
            &s.stack.resource,
            Some(&loosened),
        )
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.error, "invalid_scope", "{refused}");
    // Saying nothing of approval keeps the parent's term: the sub-agent's 300 is held too.
    let mut silent = expense_grant();
    silent[0]["max_depth"] = json!(0);
    let child = s
        .issuer
        .exchange(&s.agent, &s.token, &actor, &s.stack.resource, Some(&silent))
        .await
        .unwrap()
        .unwrap();
    let session = agent::connect(&s.stack.resource, &child).await.unwrap();
    let (code, _) = call(&session, json!(300)).await.unwrap_err();
    assert_eq!(code, -31011);
    assert!(amounts(&s.stack).is_empty());
}

fn python() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/py-mcp/bin/python");
    path.exists().then_some(path)
}

/// The official Python SDK client, taking one call per line.
struct PythonClient {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl PythonClient {
    async fn start(python: &PathBuf, url: &str, token: &str, mode: &str) -> Self {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python_approval_client.py");
        let mut child = tokio::process::Command::new(python)
            .arg(script)
            .env("MCP_URL", url)
            .env("MCP_TOKEN", token)
            .env("MCP_URL_ELICITATION", "1")
            .env("MCP_MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = Self {
            child,
            stdin,
            lines,
        };
        assert_eq!(client.next().await["outcome"], "ready");
        client
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("the Python client answered within a minute")
            .unwrap()
            .expect("the Python client is still running");
        serde_json::from_str(&line).unwrap()
    }

    async fn submit(&mut self, amount: u32) -> Value {
        let line = json!({"tool": "submit_expense",
                          "arguments": {"amount": amount, "category": "travel"}});
        self.send(&line.to_string()).await;
        self.next().await
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }
}

/// The card of the setup's grant on the account page, freshly loaded.
async fn grant_card(page: &fantoccini::Client, s: &Setup) -> fantoccini::elements::Element {
    page.goto(&format!("{}/account", s.stack.issuer_url))
        .await
        .unwrap();
    page.wait()
        .for_element(Locator::Id(&format!("grant-{}", s.grant)))
        .await
        .unwrap()
}

/// A `slow_report` call streaming through the gateway under `token`, once it streams.
async fn stream_report(
    resource: &str,
    token: &str,
) -> tokio::task::JoinHandle<Result<rmcp::model::CallToolResult, rmcp::ServiceError>> {
    let session = agent::connect(resource, token).await.unwrap();
    let report = tokio::spawn(async move {
        let arguments = json!({"seconds": 20});
        session
            .call_tool(
                CallToolRequestParams::new("slow_report")
                    .with_arguments(arguments.as_object().unwrap().clone()),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!report.is_finished(), "the report streams");
    report
}

/// The streaming call ends, within seconds, with the revocation's −31007.
async fn assert_revoked(
    report: tokio::task::JoinHandle<Result<rmcp::model::CallToolResult, rmcp::ServiceError>>,
) {
    let ended = tokio::time::timeout(Duration::from_secs(5), report)
        .await
        .expect("the stream ends when its authority is revoked")
        .unwrap();
    match ended {
        Err(rmcp::ServiceError::McpError(error)) => assert_eq!(error.code.0, -31007, "{error:?}"),
        other => panic!("expected the revocation to end the stream, got {other:?}"),
    }
}

/// The text of the first line of the console's live table of class `outcome` that contains
/// every one of `needles`, once the stream has added it (within 5 seconds).
async fn console_line(console: &fantoccini::Client, outcome: &str, needles: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows = console
            .find_all(Locator::Css(&format!("#stream tr.{outcome}")))
            .await
            .unwrap();
        for row in rows {
            let text = row.text().await.unwrap_or_default();
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
        }
        if tokio::time::Instant::now() > deadline {
            let table = console.find(Locator::Id("stream")).await.unwrap();
            let shown = table.text().await.unwrap_or_default();
            panic!("the console shows no {outcome} line with {needles:?}:\n{shown}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_python_sdk_is_sent_to_a_person_who_approves_in_chromium_and_the_call_runs_once() {
    let required = std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_some();
    let (Some(python), Some((chromium, driver))) = (python(), browser::installed()) else {
        assert!(
            !required,
            "the Python SDK (.tools/py-mcp) or Chromium is missing: run ./scripts/test.sh"
        );
        eprintln!("skipping: the Python SDK or Chromium is not installed");
        return;
    };
    let s = setup(over_200()).await;
    let mut client = PythonClient::start(&python, &s.stack.resource, &s.token, "legacy").await;

    assert_eq!(client.submit(150).await["outcome"], "ok");
    let held = client.submit(300).await;
    assert_eq!(held["code"], -32042, "a URL elicitation: {held}");
    let url = held["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/approvals/", s.stack.issuer_url)));
    assert_eq!(amounts(&s.stack), [150.0]);

    let browser = Browser::start(&chromium, &driver).await.unwrap();
    let page = &browser.client;
    page.goto(&url).await.unwrap();
    // Not signed in: the sign-in page, which comes back here.
    page.wait()
        .for_element(Locator::Css("input[name=username]"))
        .await
        .unwrap();
    browser::shoot(page, "sign-in.png").await.unwrap();
    browser::sign_in(page, "alice", PASSWORD).await.unwrap();
    let arguments = page
        .wait()
        .for_element(Locator::Id("arguments"))
        .await
        .unwrap();
    let shown: Value = serde_json::from_str(&arguments.text().await.unwrap()).unwrap();
    assert_eq!(
        shown,
        json!({"amount": 300, "category": "travel"}),
        "the exact call"
    );
    browser::shoot(page, "approval.png").await.unwrap();
    page.find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = page.wait().for_element(Locator::Css("p.ok")).await.unwrap();
    assert!(done.text().await.unwrap().starts_with("Approved"));
    browser::shoot(page, "approval-approved.png").await.unwrap();

    assert_eq!(client.submit(300).await["outcome"], "ok");
    assert_eq!(
        amounts(&s.stack),
        [150.0, 300.0],
        "exactly one expense of 300"
    );
    let replay = client.submit(300).await;
    assert_eq!(replay["code"], -32042, "spent: {replay}");
    assert_ne!(replay["url"], url);
    let other = client.submit(301).await;
    assert_eq!(other["code"], -32042);
    assert_eq!(amounts(&s.stack), [150.0, 300.0]);
    drop(client.stdin);
    let _ = client.child.wait().await;

    // A sub-agent the expense agent delegated to (silent on approval: it keeps the term).
    let helper = s
        .issuer
        .register_agent("receipts-agent", "Receipts agent")
        .await
        .unwrap();
    let helper_actor = s.issuer.client_token(&helper).await.unwrap();
    let mut narrowed = expense_grant();
    narrowed[0]["tools"] = json!(["expenses/slow_report", "expenses/list_expenses"]);
    narrowed[0]["max_depth"] = json!(0);
    let sub_token = s
        .issuer
        .exchange(
            &s.agent,
            &s.token,
            &helper_actor,
            &s.stack.resource,
            Some(&narrowed),
        )
        .await
        .unwrap()
        .unwrap();

    // Carol, an operator, watches the console in a browser of her own.
    make_operator(s._dir.path(), "carol").await.unwrap();
    let operator = Browser::start(&chromium, &driver).await.unwrap();
    let console = &operator.client;
    console
        .goto(&format!("{}/console", s.stack.issuer_url))
        .await
        .unwrap();
    browser::sign_in(console, "carol", PASSWORD).await.unwrap();
    let live = console
        .wait()
        .for_element(Locator::Id("live"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while live.text().await.unwrap() != "live" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the console goes live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // On her account page alice revokes the sub-agent's branch while its call streams through
    // the gateway: that stream ends, the sub-agent is refused, the expense agent still works.
    let sub_report = stream_report(&s.stack.resource, &sub_token).await;
    let card = grant_card(page, &s).await;
    assert!(
        card.text()
            .await
            .unwrap()
            .contains("expense-agent → receipts-agent")
    );
    browser::shoot(page, "account.png").await.unwrap();
    let branch = "form[action$=\"/branches/receipts-agent/revoke\"] button";
    card.find(Locator::Css(branch))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.wait().for_element(Locator::Css("p.ok")).await.unwrap();
    assert_revoked(sub_report).await;
    assert!(
        agent::connect(&s.stack.resource, &sub_token).await.is_err(),
        "the sub-agent is refused"
    );
    let parent = agent::connect(&s.stack.resource, &s.token).await.unwrap();
    let listed = parent
        .call_tool(CallToolRequestParams::new("list_expenses"))
        .await;
    assert!(listed.is_ok(), "the expense agent still works: {listed:?}");

    // The console showed both live: the revocation, and the sub-agent refused for it.
    let branch_value = format!("branch {}/receipts-agent", s.grant);
    console_line(
        console,
        "revoked",
        &[&branch_value, "by alice on the account page"],
    )
    .await;
    console_line(
        console,
        "deny",
        &["alice", "expense-agent → receipts-agent", "revoked"],
    )
    .await;

    // Carol freezes the expense list from the console: the next call of it is refused.
    console
        .find(Locator::Css("#freeze input[name=pattern]"))
        .await
        .unwrap()
        .send_keys("expenses/list_expenses")
        .await
        .unwrap();
    console
        .find(Locator::Css("#freeze input[name=reason]"))
        .await
        .unwrap()
        .send_keys("month-end close")
        .await
        .unwrap();
    console
        .find(Locator::Css("#freeze button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let done = console
        .wait()
        .for_element(Locator::Css("p.ok"))
        .await
        .unwrap();
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Froze expenses/list_expenses")
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let refusal = loop {
        match parent
            .call_tool(CallToolRequestParams::new("list_expenses"))
            .await
        {
            Err(rmcp::ServiceError::McpError(error)) => break error,
            Ok(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("the frozen tool was not refused: {other:?}"),
        }
    };
    assert_eq!(refusal.code.0, -31001, "{refusal:?}");
    assert_eq!(refusal.data.unwrap()["reason"], "change_freeze");
    console_line(console, "deny", &["list_expenses", "change_freeze"]).await;
    browser::shoot(console, "console.png").await.unwrap();
    let decisions = console.find(Locator::Id("decisions")).await.unwrap();
    console
        .execute(
            "arguments[0].scrollIntoView()",
            vec![serde_json::to_value(&decisions).unwrap()],
        )
        .await
        .unwrap();
    browser::shoot(console, "console-decisions.png")
        .await
        .unwrap();
    // The admin API's interactive docs, served by the issuer itself.
    console
        .goto(&format!("{}/docs/", s.stack.issuer_url))
        .await
        .unwrap();
    let title = console
        .wait()
        .for_element(Locator::Css(".swagger-ui .info .title"))
        .await
        .unwrap();
    assert!(
        title
            .text()
            .await
            .unwrap()
            .contains("Portcullis issuer admin API")
    );
    browser::shoot(console, "admin-api-docs.png").await.unwrap();

    // Then the whole grant, while a call of the expense agent streams.
    let report = stream_report(&s.stack.resource, &s.token).await;
    let card = grant_card(page, &s).await;
    let chains = card.find(Locator::Css("ul.chains")).await.unwrap();
    let chains = chains.text().await.unwrap();
    assert!(
        chains.contains("revoked"),
        "the branch shows revoked: {chains}"
    );
    card.find(Locator::Css("form.revoke-grant button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = page.wait().for_element(Locator::Css("p.ok")).await.unwrap();
    assert!(notice.text().await.unwrap().contains("is revoked"));
    browser::shoot(page, "account-revoked.png").await.unwrap();
    assert_revoked(report).await;
    assert!(
        agent::connect(&s.stack.resource, &s.token).await.is_err(),
        "refused from now on"
    );
}

#[tokio::test]
async fn in_2026_07_28_the_sdk_asks_its_user_in_the_middle_of_the_call_and_retries_by_itself() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "the Python SDK is not installed in .tools/py-mcp (run ./scripts/test.sh)"
        );
        eprintln!("skipping: the Python SDK is not installed");
        return;
    };
    let s = setup(over_200()).await;
    let mut client = PythonClient::start(&python, &s.stack.resource, &s.token, "2026-07-28").await;
    assert_eq!(client.submit(120).await["outcome"], "ok");
    // One call: the input request comes first, the result after the person's answer.
    let asked = client.submit(300).await;
    assert_eq!(asked["outcome"], "elicitation", "{asked}");
    let url = asked["url"].as_str().unwrap();
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(asked["id"], id);
    assert_eq!(amounts(&s.stack), [120.0]);
    let alice = Person::sign_in(&s.stack.issuer_url, "alice", PASSWORD)
        .await
        .unwrap();
    assert_eq!(alice.answer(id, true).await.unwrap().status, 200);
    client.send("answered").await;
    let done = client.next().await;
    assert_eq!(done["outcome"], "ok", "the SDK's retry ran: {done}");
    assert_eq!(amounts(&s.stack), [120.0, 300.0]);
    let last_call = s
        .stack
        .expenses
        .seen_requests()
        .into_iter()
        .rev()
        .find(|r| r.rpc_method.as_deref() == Some("tools/call"))
        .unwrap();
    assert!(
        !last_call
            .params
            .iter()
            .any(|p| p == "requestState" || p == "inputResponses"),
        "the gateway's own state never reaches the upstream: {:?}",
        last_call.params
    );
    drop(client.stdin);
    let _ = client.child.wait().await;
}
