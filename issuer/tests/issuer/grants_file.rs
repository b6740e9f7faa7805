//! Declarative grants: lint, idempotent apply with replace and prune, and who-can.

use portcullis_issuer::grants_file::{self, Severity};
use serde_json::json;

use crate::support::*;

fn file(max: u32, extra: &str) -> String {
    format!(
        "grants:
  - name: alice-expenses
    user: alice
    agent: expense-agent
    resources: ['{RESOURCE}']
    expires_in: 86400
    authorization_details:
      - type: mcp_tools
        tools: [expenses/submit_expense]
        limits: [{{tool: expenses/submit_expense, pointer: /amount, max: {max}}}]
{extra}"
    )
}

const BOB: &str = "  - name: bob-expenses
    user: bob
    agent: expense-agent
    resources: ['http://gw.test/mcp/expenses']
    expires_in: 86400
    authorization_details: [{type: mcp_tools, tools: [expenses/list_expenses]}]
";

#[test]
fn lint_finds_errors_and_risks() {
    let risky = "grants:
  - name: everything
    user: alice
    agent: a
    resources: []
    expires_in: 0
    authorization_details: [{type: mcp_tools, tools: ['*', 'k8s/*'],
      windows: [{days: [sun], start: '03:00', end: '03:30', tz: UTC}]}]
  - name: everything
    user: bob
    agent: a
    resources: ['https://x']
    expires_in: 60
    authorization_details: [{type: mcp_tools, tools: [a/b]}]
";
    let findings = grants_file::lint(&grants_file::parse(risky).unwrap());
    let messages: Vec<(Severity, &str)> = findings
        .iter()
        .map(|f| (f.severity, f.message.as_str()))
        .collect();
    for expected in [
        (Severity::Error, "expires_in must be positive"),
        (Severity::Error, "names no resource"),
        (
            Severity::Error,
            "* grants tools of every upstream; name the upstream",
        ),
        (
            Severity::Warning,
            "k8s/* grants every tool of its upstream, and nothing is denied",
        ),
        (Severity::Error, "the name is used twice"),
    ] {
        assert!(
            messages.contains(&expected),
            "{expected:?} not in {messages:?}"
        );
    }
    assert!(
        messages
            .iter()
            .any(|(s, m)| *s == Severity::Warning && m.contains("less than an hour"))
    );
    assert!(grants_file::lint(&grants_file::parse(&file(500, "")).unwrap()).is_empty());
}

#[test]
fn a_typo_in_the_file_is_an_error_not_a_silent_default() {
    let typo = file(500, "").replace("expires_in", "expire_in");
    assert!(grants_file::parse(&typo).is_err());
}

#[tokio::test]
async fn apply_is_idempotent_replaces_changed_grants_and_prunes_only_when_asked() {
    for b in backends().await {
        let issuer = open_issuer(&b).await;
        let state = issuer.state();
        let app = portcullis_issuer::app(state.clone());
        register(&app, "expense-agent").await;
        let now = portcullis_issuer::now();

        let both = grants_file::parse(&file(500, BOB)).unwrap();
        let plan = grants_file::apply(state, &both, false, now).await.unwrap();
        assert_eq!(
            plan.create,
            ["alice-expenses", "bob-expenses"],
            "[{}]",
            b.name
        );
        let again = grants_file::apply(state, &both, false, now).await.unwrap();
        assert!(
            again.create.is_empty() && again.replace.is_empty(),
            "[{}] {again:?}",
            b.name
        );
        assert_eq!(again.unchanged.len(), 2);

        let granted = |max| async move {
            grants_file::who_can(
                state,
                "expenses/submit_expense",
                &json!({"amount": max}),
                now,
            )
            .await
            .unwrap()
        };
        let answers = granted(400).await;
        assert_eq!(answers.len(), 1);
        assert!(answers[0].allowed && answers[0].user == "alice");
        let old_grant = answers[0].grant_id.clone();

        // A tighter limit replaces the grant: the old one (and its tokens) is revoked.
        let tighter = grants_file::parse(&file(300, BOB)).unwrap();
        let plan = grants_file::apply(state, &tighter, false, now)
            .await
            .unwrap();
        assert_eq!(plan.replace, ["alice-expenses"]);
        let answers = granted(400).await;
        assert_eq!(answers.len(), 1);
        assert!(!answers[0].allowed, "{:?}", answers[0]);
        assert_ne!(answers[0].grant_id, old_grant);
        let old = portcullis_issuer::grants::get(&state.db, &old_grant)
            .await
            .unwrap()
            .unwrap();
        assert!(old.revoked_at.is_some());

        // Bob leaves the file: kept without --prune, revoked with it.
        let alice_only = grants_file::parse(&file(300, "")).unwrap();
        let plan = grants_file::apply(state, &alice_only, false, now)
            .await
            .unwrap();
        assert_eq!(plan.remove, ["bob-expenses"]);
        let listed = grants_file::who_can(state, "expenses/list_expenses", &json!({}), now)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        grants_file::apply(state, &alice_only, true, now)
            .await
            .unwrap();
        let listed = grants_file::who_can(state, "expenses/list_expenses", &json!({}), now)
            .await
            .unwrap();
        assert!(listed.is_empty(), "[{}] {listed:?}", b.name);
    }
}
