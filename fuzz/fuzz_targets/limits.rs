//! Tool and argument limits (`policy::authorize`) over arbitrary arguments, against a model.
//!
//! The input is `tool 0xFF arguments [0xFF authorization_details entry]`. The arguments are
//! read as the gateway reads them (`strict_json`). Without a third part they are judged by
//! `authorize` against a fixed verified token whose limits use escaped (`~0`, `~1`), nested,
//! array-index, `/` and whole-document pointers; with one, the fuzzer's own entry is
//! validated and, if valid, judged by `Constraints::evaluate`. Never panics, and the decision
//! (permit, or the code of the rule that denied) equals the one of a model written here from
//! the documented rules, with its own RFC 6901 pointer lookup (not `Value::pointer`).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{MAX_INPUT, NOW, verified_token};
use portcullis_policy::{
    Action, Constraints, Decision, Limit, VerifiedToken, authorize, strict_json,
};
use serde_json::{Value, json};

static TOKEN: LazyLock<VerifiedToken> = LazyLock::new(|| {
    verified_token(json!({
        "type": "mcp_tools",
        "tools": ["expenses/submit_expense", "expenses/list_*", "expenses/x*"],
        "deny": ["expenses/list_secret*"],
        "limits": [
            {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500, "min": 0},
            {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]},
            {"tool": "expenses/x*", "pointer": "/a~1b/0", "eq": 7},
            {"tool": "expenses/x*", "pointer": "/m~0n", "prefix": "ok-"},
            {"tool": "expenses/xnest", "pointer": "/items/1/price", "max": 10.5},
            {"tool": "expenses/xempty", "pointer": "/", "in": [1, "1", true, null]},
            {"tool": "expenses/xwhole", "pointer": "", "eq": {"k": 1}}
        ]
    }))
});

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut parts = data.splitn(3, |b| *b == 0xFF);
    let tool = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let Ok(arguments) = strict_json::from_slice(parts.next().unwrap_or_default()) else {
        return;
    };
    let action = Action {
        tool: &tool,
        arguments: &arguments,
        at: NOW, hints: None };
    match parts.next() {
        None => {
            let constraints = TOKEN
                .claims()
                .constraints
                .as_ref()
                .expect("has constraints");
            let got = match authorize(&TOKEN, &action) {
                Decision::Permit(_) => Ok(()),
                Decision::NeedsApproval(_) => unreachable!("the token has no approval terms"),
                Decision::Deny(reason) => Err(reason.code()),
            };
            assert_eq!(got, model(constraints, &action), "{action:?}");
        }
        Some(detail) => {
            let Ok(detail) = strict_json::from_slice(detail) else {
                return;
            };
            let Ok(constraints) = Constraints::from_authorization_details(&[detail]) else {
                return;
            };
            let got = constraints.evaluate(&action).map_err(|r| r.code());
            assert_eq!(
                got,
                model(&constraints, &action),
                "{action:?} {constraints:?}"
            );
        }
    }
});

/// The documented rules: deny patterns first, then the allow patterns, the windows, and every
/// limit on the tool in order; absent arguments are `{}`.
fn model(constraints: &Constraints, action: &Action<'_>) -> Result<(), &'static str> {
    let matches = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => action.tool.starts_with(prefix),
        None => action.tool == pattern,
    };
    if constraints.deny().iter().any(|p| matches(p.as_str())) {
        return Err("tool_denied");
    }
    if !constraints.tools().iter().any(|p| matches(p.as_str())) {
        return Err("tool_not_granted");
    }
    let windows = constraints.windows();
    if !windows.is_empty() && !windows.iter().any(|w| w.contains(action.at)) {
        return Err("outside_window");
    }
    let limits: Vec<&Limit> = constraints
        .limits()
        .iter()
        .filter(|l| matches(l.tool.as_str()))
        .collect();
    if limits.is_empty() {
        return Ok(());
    }
    let empty = json!({});
    let arguments = match action.arguments {
        Value::Null => &empty,
        Value::Object(_) => action.arguments,
        _ => return Err("arguments_not_object"),
    };
    limits.into_iter().try_for_each(|l| check(l, arguments))
}

fn check(limit: &Limit, arguments: &Value) -> Result<(), &'static str> {
    let value = lookup(arguments, &limit.pointer).ok_or("argument_missing")?;
    if limit.max.is_some() || limit.min.is_some() {
        let Value::Number(n) = value else {
            return Err("argument_wrong_type");
        };
        let got = n.as_f64().ok_or("argument_wrong_type")?;
        if limit.max.is_some_and(|max| got > max) {
            return Err("limit_max");
        }
        if limit.min.is_some_and(|min| got < min) {
            return Err("limit_min");
        }
    }
    if let Some(set) = &limit.one_of
        && !set.iter().any(|a| same(a, value))
    {
        return Err("limit_in");
    }
    if let Some(expected) = &limit.eq
        && !same(expected, value)
    {
        return Err("limit_eq");
    }
    if let Some(prefix) = &limit.prefix {
        let Value::String(got) = value else {
            return Err("argument_wrong_type");
        };
        if !got.starts_with(prefix.as_str()) {
            return Err("limit_prefix");
        }
    }
    Ok(())
}

/// Equal JSON values, a number equal to any number of the same value (`500` = `500.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// RFC 6901: `""` is the whole document; otherwise `/`-separated reference tokens, `~1` for
/// `/` and `~0` for `~` (any other `~` is an error), array indices `0` or without leading
/// zeros.
fn lookup<'a>(document: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(document);
    }
    let mut here = document;
    for token in pointer.strip_prefix('/')?.split('/') {
        let mut key = String::new();
        let mut chars = token.chars();
        while let Some(c) = chars.next() {
            key.push(match (c, c == '~') {
                (_, false) => c,
                (_, true) => match chars.next() {
                    Some('0') => '~',
                    Some('1') => '/',
                    _ => return None,
                },
            });
        }
        here = match here {
            Value::Object(members) => members.get(&key)?,
            Value::Array(items) => {
                let index_ok = key == "0"
                    || (!key.starts_with('0')
                        && !key.is_empty()
                        && key.bytes().all(|b| b.is_ascii_digit()));
                if !index_ok {
                    return None;
                }
                items.get(key.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(here)
}
