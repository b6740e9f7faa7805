//! `tools/list` pagination through the gateway, with a real paginated upstream (the conformance
//! fixture, five tools a page): every page is filtered on its own, a page filtered to nothing
//! still carries the upstream's `nextCursor` (so the client walks on to the pages that do hold
//! its tools), and the union of the pages is exactly the grant.

use std::collections::BTreeSet;

use portcullis_examples::agent::{IssuerClient, connect};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::ServiceError;
use rmcp::model::{CallToolRequestParams, PaginatedRequestParams};
use serde_json::json;

const PAGE: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_filtered_and_empty_pages_still_lead_to_the_next() {
    let dir = tempfile::TempDir::new().unwrap();
    let fixture = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fixture_url = format!("http://{}/mcp", fixture.local_addr().unwrap());
    tokio::spawn(portcullis_examples::conformance::serve(fixture, Some(PAGE)));
    let stack = Stack::start(&StackOptions::with_upstream(
        dir.path(),
        "conformance",
        &fixture_url,
    ))
    .await
    .unwrap();
    let all = portcullis_examples::conformance::tool_names();
    // One tool from each of the first three pages; the pages after them hold none.
    let granted: BTreeSet<String> = [0, PAGE + 2, 2 * PAGE + 3]
        .iter()
        .map(|&i| all[i].clone())
        .collect();
    assert!(all.len() > 4 * PAGE, "enough tools for empty pages");
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer.register_agent("pager", "Pager").await.unwrap();
    let resource = format!("{}/mcp/conformance", stack.gateway_url);
    let patterns: Vec<String> = granted.iter().map(|t| format!("conformance/{t}")).collect();
    let (_, token) = issuer
        .delegation(
            &agent,
            "alice",
            &resource,
            json!([{"type": "mcp_tools", "tools": patterns, "max_depth": 0}]),
        )
        .await
        .unwrap();

    let session = connect(&resource, &token).await.unwrap();
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    let mut empty_pages_with_cursor = 0;
    let mut cursor = None;
    loop {
        let page = session
            .peer()
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .unwrap();
        pages += 1;
        if page.tools.is_empty() && page.next_cursor.is_some() {
            empty_pages_with_cursor += 1;
        }
        seen.extend(page.tools.into_iter().map(|t| t.name.into_owned()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, granted, "the pages together show exactly the grant");
    assert_eq!(
        pages,
        all.len().div_ceil(PAGE),
        "every upstream page came through"
    );
    assert!(
        empty_pages_with_cursor >= 2,
        "pages filtered to nothing keep their nextCursor"
    );

    // A tool on a page the agent saw filtered is still refused if called by name.
    let hidden = all.iter().find(|t| !granted.contains(*t)).unwrap();
    let refused = session
        .peer()
        .call_tool(CallToolRequestParams::new(hidden.clone()))
        .await
        .unwrap_err();
    match refused {
        ServiceError::McpError(error) => {
            assert_eq!(error.code.0, -31001, "{error:?}");
            assert_eq!(error.data.unwrap()["reason"], "tool_not_granted");
        }
        other => panic!("expected a policy denial, got {other:?}"),
    }
    session.cancel().await.unwrap();
    stack.stop();
}
