//! The gateway's decision audit with real parts: every allow and deny lands in the gateway's
//! local hash chain and, exactly once, in the issuer's; decisions made while the issuer is
//! unreachable wait on disk and arrive when it is back.

use std::time::{Duration, Instant};

use portcullis_examples::agent::{IssuerClient, connect, expense_grant};
use portcullis_examples::stack::{Stack, StackOptions};
use portcullis_issuer::StorageOptions;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

/// The `gateway.decision` events in the issuer's audit chain, in order.
async fn issuer_decisions(data_dir: &std::path::Path) -> Vec<Value> {
    let db = portcullis_issuer::open_database(&StorageOptions {
        data_dir: data_dir.to_owned(),
        database_url: None,
        key_encryption_secret: None,
    })
    .await
    .unwrap();
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT data FROM audit_events WHERE kind = 'gateway.decision' ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect()
}

async fn wait_for_decisions(data_dir: &std::path::Path, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let decisions = issuer_decisions(data_dir).await;
        if decisions.len() >= count || Instant::now() > deadline {
            return decisions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(name.to_owned())
        .with_arguments(arguments.as_object().unwrap().clone())
}

#[tokio::test]
async fn every_decision_reaches_the_issuers_chain_once_even_across_an_outage() {
    let dir = tempfile::TempDir::new().unwrap();
    let audit_dir = dir.path().join("gateway-audit");
    let stack = Stack::start(&StackOptions {
        issuer_relay: true,
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
    let (grant_id, token) = issuer
        .delegation(&agent, "alice", &stack.resource, expense_grant())
        .await
        .unwrap();
    let session = connect(&stack.resource, &token).await.unwrap();

    let allowed = json!({"amount": 120, "category": "travel", "note": "train"});
    session
        .call_tool(call("submit_expense", allowed.clone()))
        .await
        .unwrap();
    session
        .call_tool(call(
            "submit_expense",
            json!({"amount": 900, "category": "travel"}),
        ))
        .await
        .expect_err("over the limit");
    let decisions = wait_for_decisions(dir.path(), 2).await;
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let (allow, deny) = (&decisions[0], &decisions[1]);
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["rule"], "permit");
    assert_eq!(allow["sub"], "alice");
    assert_eq!(allow["act"], json!(["expense-agent"]));
    assert_eq!(allow["gid"], grant_id.as_str());
    assert_eq!(allow["target"], "submit_expense");
    assert_eq!(allow["gateway"], "gw-test");
    assert_eq!(
        allow["arguments_digest"],
        portcullis_gateway::decision_log::digest(&allowed),
        "the arguments travel as a digest only"
    );
    assert!(!allow.to_string().contains("train"));
    assert_eq!(
        (deny["decision"].as_str(), deny["rule"].as_str()),
        (Some("deny"), Some("limit_max"))
    );

    // The issuer becomes unreachable: decisions wait in the gateway's log.
    let relay = stack.issuer_relay.as_ref().unwrap();
    relay.cut();
    session
        .call_tool(call("delete_all_expenses", json!({})))
        .await
        .expect_err("not granted");
    session
        .call_tool(call("list_expenses", json!({})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        issuer_decisions(dir.path()).await.len(),
        2,
        "nothing got through the cut"
    );
    let log = audit_dir.join("decisions.jsonl");
    assert_eq!(
        portcullis_gateway::decision_log::verify(&log),
        Ok(4),
        "kept on disk meanwhile"
    );

    relay.restore();
    let decisions = wait_for_decisions(dir.path(), 4).await;
    let seqs: Vec<i64> = decisions
        .iter()
        .map(|d| d["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4], "each decision once, in order");
    assert_eq!(decisions[2]["rule"], "tool_not_granted");
    let storage = StorageOptions {
        data_dir: dir.path().to_owned(),
        database_url: None,
        key_encryption_secret: None,
    };
    let db = portcullis_issuer::open_database(&storage).await.unwrap();
    assert_eq!(
        portcullis_issuer::audit::verify(&db, &storage.key_encryption().unwrap().anchor_key())
            .await
            .unwrap()
            .first_break,
        None
    );

    // The local chain detects tampering.
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"deny\"", "\"allow\"", 1)).unwrap();
    assert!(
        portcullis_gateway::decision_log::verify(&log)
            .unwrap_err()
            .contains("seq 2")
    );
    session.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_with_decisions_unshipped_ships_each_once_after_restart() {
    let dir = tempfile::TempDir::new().unwrap();
    let audit_dir = dir.path().join("gateway-audit");
    let mut stack = Stack::start(&StackOptions {
        issuer_relay: true,
        audit_dir: Some(audit_dir.clone()),
        gateway_binary: Some(portcullis_examples::stack::gateway_binary()),
        ..StackOptions::sqlite(dir.path())
    })
    .await
    .unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("agent", "Agent").await.unwrap();
    let (_, token) = issuer
        .delegation(&agent, "alice", &stack.resource, expense_grant())
        .await
        .unwrap();
    let session = connect(&stack.resource, &token).await.unwrap();

    // Two decisions shipped, then the issuer becomes unreachable and twenty more wait on disk.
    for amount in [10, 900] {
        let _ = session
            .call_tool(call(
                "submit_expense",
                json!({"amount": amount, "category": "meal"}),
            ))
            .await;
    }
    assert_eq!(wait_for_decisions(dir.path(), 2).await.len(), 2);
    stack.issuer_relay.as_ref().unwrap().cut();
    for amount in 0..20 {
        let _ = session
            .call_tool(call(
                "submit_expense",
                json!({"amount": amount * 50, "category": "meal"}),
            ))
            .await;
    }
    let log = audit_dir.join("decisions.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while portcullis_gateway::decision_log::verify(&log) != Ok(22) {
        assert!(
            Instant::now() < deadline,
            "the decisions never reached the disk"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = session.cancel().await;

    // A crash with twenty decisions unshipped, then a restart with the issuer back.
    stack.crash_gateway().unwrap();
    stack.issuer_relay.as_ref().unwrap().restore();
    stack.restart_gateway().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let decisions = loop {
        let decisions = issuer_decisions(dir.path()).await;
        if decisions.len() >= 22 || Instant::now() > deadline {
            break decisions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let seqs: Vec<i64> = decisions
        .iter()
        .map(|d| d["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=22).collect::<Vec<_>>(),
        "each decision once, none lost"
    );
    assert_eq!(portcullis_gateway::decision_log::verify(&log), Ok(22));
    stack.stop();
}
