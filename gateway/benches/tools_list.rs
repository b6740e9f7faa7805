//! Criterion benchmarks of `tools/list` filtering, the gateway's per-response work on lists:
//! a catalog of 1 004 tools (realistic descriptions and schemas) filtered for a grant that
//! keeps some and hides the rest, with and without tool pinning.
//!
//! Run: `cargo bench -p portcullis-gateway --bench tools_list`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_gateway::pins::{Pins, Verdict};
use portcullis_gateway::tools_list::{self, ListKind};
use portcullis_policy::Constraints;
use serde_json::json;

const TOOLS: usize = 1000;

/// A `tools/list` result as the expenses server's catalog answers it.
fn catalog() -> String {
    let mut tools: Vec<serde_json::Value> = (0..TOOLS)
        .map(|i| {
            json!({
                "name": format!("catalog_{i:04}"),
                "description": format!("Catalog operation number {i}: reads or changes one account of the ledger."),
                "inputSchema": {"type": "object", "properties": {
                    "account": {"type": "string", "description": "The account to act on."},
                    "amount": {"type": "number", "minimum": 0},
                    "dry_run": {"type": "boolean", "default": true}
                }, "required": ["account"]}
            })
        })
        .collect();
    for name in [
        "submit_expense",
        "list_expenses",
        "delete_all_expenses",
        "slow_report",
    ] {
        tools.push(json!({"name": name, "description": "An expenses tool.", "inputSchema": {"type": "object"}}));
    }
    json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": tools, "nextCursor": "page-2"}})
        .to_string()
}

/// Most of the catalog, minus a denied slice and the destructive tool.
fn grant() -> Constraints {
    Constraints::from_authorization_details(&[json!({
        "type": "mcp_tools",
        "tools": ["expenses/catalog_*", "expenses/list_expenses", "expenses/submit_expense"],
        "deny": ["expenses/catalog_09*"],
    })])
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let message = catalog();
    let grant = grant();
    // As the proxy does it: one reused buffer for `upstream/name`.
    let full = std::cell::RefCell::new(String::new());
    let policy = |name: &str| {
        let mut full = full.borrow_mut();
        full.clear();
        full.push_str("expenses/");
        full.push_str(name);
        grant.allows_tool(&full, None)
    };
    let mut group = c.benchmark_group("tools_list");
    group.bench_function("filter_1004_tools", |b| {
        b.iter(|| {
            tools_list::filter(black_box(&message), |kind, name, _| {
                kind == ListKind::Tools && policy(name)
            })
            .unwrap()
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::open(dir.path().join("pins.json")).unwrap();
    // The first sight pins every tool; the benchmark measures the steady state after it.
    tools_list::filter(&message, |_, name, entry| {
        pins.observe("expenses", name, entry, 0) == Verdict::Trusted
    })
    .unwrap();
    group.bench_function("filter_1004_tools_pinned", |b| {
        b.iter(|| {
            tools_list::filter(black_box(&message), |kind, name, entry| {
                kind == ListKind::Tools
                    && policy(name)
                    && pins.observe("expenses", name, entry, 0) == Verdict::Trusted
            })
            .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
