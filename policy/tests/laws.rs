//! Laws the policy must obey for every input, checked with proptest.

mod common;

use portcullis_policy::constraint::RawAuthorizationDetail;
use portcullis_policy::{
    Action, ApprovalTerm, Claims, Constraints, Limit, RawClaims, Requirement, ToolHints,
    ToolPattern, narrow, sign,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const TOOLS: [&str; 6] = [
    "expenses/submit_expense",
    "expenses/list_expenses",
    "expenses/delete_all_expenses",
    "payroll/run",
    "payroll/view",
    "k8s/delete_pod",
];
const PATTERNS: [&str; 9] = [
    "expenses/submit_expense",
    "expenses/list_expenses",
    "expenses/*",
    "expenses/delete_*",
    "payroll/*",
    "payroll/view",
    "k8s/*",
    "*",
    "expenses/list_*",
];
const CATEGORIES: [&str; 4] = ["travel", "meal", "jewelry", "hotel"];

fn pattern() -> impl Strategy<Value = ToolPattern> {
    prop::sample::select(PATTERNS.to_vec()).prop_map(|p| ToolPattern::new(p).unwrap())
}

fn limit() -> impl Strategy<Value = Limit> {
    (
        pattern(),
        prop::option::of(0u32..1000),
        prop::option::of(0u32..100),
        prop::option::of(prop::sample::subsequence(CATEGORIES.to_vec(), 1..4)),
    )
        .prop_map(|(tool, max, min, set)| {
            let (pointer, max, min, one_of) = match set {
                Some(set) => (
                    "/category",
                    None,
                    None,
                    Some(set.into_iter().map(Value::from).collect()),
                ),
                None => (
                    "/amount",
                    Some(f64::from(max.unwrap_or(500))),
                    min.map(f64::from),
                    None,
                ),
            };
            let (min, max) = match (min, max) {
                (Some(lo), Some(hi)) if lo > hi => (Some(hi), Some(lo)),
                other => other,
            };
            Limit {
                tool,
                pointer: pointer.into(),
                max,
                min,
                one_of,
                eq: None,
                prefix: None,
            }
        })
}

const PEOPLE: [&str; 3] = ["carol", "dave", "erin"];

fn approval_term() -> impl Strategy<Value = ApprovalTerm> {
    (
        pattern(),
        prop::option::of(0u32..1000),
        prop::sample::subsequence(PEOPLE.to_vec(), 0..3),
        1u32..1000,
    )
        .prop_map(|(tool, above, four_eyes, valid_for)| {
            let when: Vec<Value> = above
                .map(|min| json!({"pointer": "/amount", "min": min}))
                .into_iter()
                .collect();
            serde_json::from_value(json!({
                "tool": tool, "when": when, "four_eyes": four_eyes, "valid_for": valid_for
            }))
            .unwrap()
        })
}

fn constraints() -> impl Strategy<Value = Constraints> {
    (
        prop::collection::vec(pattern(), 0..4),
        prop::collection::vec(pattern(), 0..2),
        prop::collection::vec(limit(), 0..4),
        0u32..3,
        prop::collection::vec(approval_term(), 0..3),
        prop::collection::vec(pattern(), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(tools, deny, limits, max_depth, approval, read_only, deny_destructive)| {
                Constraints::new(RawAuthorizationDetail {
                    kind: "mcp_tools".into(),
                    tools,
                    deny,
                    read_only,
                    deny_destructive,
                    resources: Vec::new(),
                    prompts: Vec::new(),
                    limits,
                    windows: Vec::new(),
                    rate: None,
                    approval,
                    max_depth,
                })
                .unwrap()
            },
        )
}

fn call() -> impl Strategy<Value = (&'static str, Value)> {
    (
        prop::sample::select(TOOLS.to_vec()),
        prop::option::of(0u32..1200),
        prop::option::of(prop::sample::select(CATEGORIES.to_vec())),
    )
        .prop_map(|(tool, amount, category)| {
            let mut args = serde_json::Map::new();
            if let Some(a) = amount {
                args.insert("amount".into(), json!(a));
            }
            if let Some(c) = category {
                args.insert("category".into(), json!(c));
            }
            (tool, Value::Object(args))
        })
}

fn allows(c: &Constraints, tool: &str, arguments: &Value) -> bool {
    allows_with(c, tool, arguments, None)
}

/// Every kind of trusted hints a tool can have, and none.
const HINTS: [Option<ToolHints>; 4] = [
    None,
    Some(ToolHints {
        read_only: true,
        destructive: false,
    }),
    Some(ToolHints {
        read_only: false,
        destructive: true,
    }),
    Some(ToolHints {
        read_only: false,
        destructive: false,
    }),
];

fn allows_with(c: &Constraints, tool: &str, arguments: &Value, hints: Option<ToolHints>) -> bool {
    c.evaluate(&Action {
        tool,
        arguments,
        at: common::NOW,
        hints,
    })
    .is_ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn child_allows_implies_parent_allows(
        parent in constraints(),
        request in constraints(),
        calls in prop::collection::vec(call(), 16),
    ) {
        if let Ok(child) = narrow(&parent, &request) {
            for (tool, args) in &calls {
                for hints in HINTS {
                    if allows_with(&child, tool, args, hints) {
                        prop_assert!(allows_with(&parent, tool, args, hints),
                            "child allows {tool} {args} with {hints:?} but parent does not");
                    }
                }
            }
        }
    }

    #[test]
    fn a_child_asks_a_person_wherever_its_parent_would_and_no_less_strictly(
        parent in constraints(),
        request in constraints(),
        calls in prop::collection::vec(call(), 16),
    ) {
        if let Ok(child) = narrow(&parent, &request) {
            for (tool, args) in &calls {
                let Some(theirs) = Requirement::of(parent.approval(), tool, args) else {
                    continue;
                };
                let mine = Requirement::of(child.approval(), tool, args);
                prop_assert!(mine.is_some(), "the child skips the approval of {tool} {args}");
                let mine = mine.unwrap();
                prop_assert!(mine.valid_for <= theirs.valid_for);
                if let Some(theirs) = &theirs.four_eyes {
                    let mine = mine.four_eyes.as_ref();
                    prop_assert!(mine.is_some_and(|m| m.iter().all(|p| theirs.contains(p))),
                        "the child widens who may give the second approval of {tool}");
                }
            }
        }
    }

    #[test]
    fn adding_a_deny_never_grants(
        base in constraints(),
        extra in pattern(),
        calls in prop::collection::vec(call(), 16),
    ) {
        let mut raw = base.to_raw();
        raw.deny.push(extra);
        let denied = Constraints::new(raw).unwrap();
        for (tool, args) in &calls {
            if allows(&denied, tool, args) {
                prop_assert!(allows(&base, tool, args));
            }
        }
    }

    #[test]
    fn narrowing_to_itself_changes_nothing_it_allows(
        base in constraints(),
        calls in prop::collection::vec(call(), 16),
    ) {
        // Contradictory limits (two `in` sets on one argument) make a self-request ask for a
        // value one parent limit forbids, which is refused; otherwise nothing may change.
        if let Ok(same) = narrow(&base, &base) {
            for (tool, args) in &calls {
                prop_assert_eq!(allows(&same, tool, args), allows(&base, tool, args));
            }
        }
    }

    #[test]
    fn sign_then_verify_round_trips(
        constraints in constraints(),
        sub in "[a-z]{1,12}",
        agent in "[a-z-]{1,12}",
        lifetime in 1i64..3600,
        use_ec in any::<bool>(),
    ) {
        let mut raw: RawClaims = serde_json::from_value(common::claims()).unwrap();
        raw.sub = Some(sub);
        raw.act = Some(portcullis_policy::claims::RawActor { sub: agent.clone(), act: None });
        raw.client_id = Some(agent);
        raw.exp = Some(common::NOW + lifetime);
        raw.authorization_details = Some(Vec::from(constraints));
        let claims = Claims::try_from(raw).unwrap();
        let key = if use_ec { common::ec_key() } else { common::ed_key() };
        let token = sign(&claims, &key);
        let verified = common::verifier().verify(&token, &common::expected()).unwrap();
        prop_assert_eq!(verified.claims(), &claims);
    }

    #[test]
    fn a_bound_parent_only_delegates_to_bound_children(
        parent_bound in any::<bool>(),
        child_key in prop::option::of("[A-Za-z0-9_-]{43}"),
    ) {
        let mut raw: RawClaims = serde_json::from_value(common::claims()).unwrap();
        if parent_bound {
            raw.cnf = Some(json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}));
        }
        let parent = Claims::try_from(raw).unwrap();
        let request = portcullis_policy::DelegationRequest {
            actor: portcullis_policy::Actor { sub: "sub-agent".into() },
            audience: common::AUDIENCE.into(),
            constraints: None,
            issued_at: common::NOW,
            expires_at: common::NOW + 60,
            token_id: "child".into(),
            confirmation: child_key.clone(),
        };
        match portcullis_policy::attenuate(&parent, request) {
            Ok(child) => {
                prop_assert!(!parent_bound || child.confirmation.is_some());
                prop_assert_eq!(child.confirmation, child_key);
            }
            Err(e) => prop_assert!(parent_bound && child_key.is_none(), "{e}"),
        }
    }
}
