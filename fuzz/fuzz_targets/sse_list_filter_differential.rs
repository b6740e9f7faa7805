//! An upstream's answer through the gateway's list filter, read by a client.
//!
//! The input is `flags chunking body`. With bit 0 of `flags` clear the body is an event
//! stream, cut into chunks (sizes drawn from `chunking`; 0 = one chunk) and fed through the
//! proxy's `SseRewriter` with the real `list_filter::filter_message` for a token allowing a
//! few tools; the output is then parsed by a reference SSE client written here from the
//! WHATWG event-stream rules (one leading BOM dropped, CR, LF and CRLF line ends, `data`
//! lines joined by LF, an event dispatched on a blank line, an unfinished one at the end
//! dropped). With bit 0 set the body is a whole JSON answer, filtered as the proxy filters
//! one. Either way, no message a client reads (an object, or each element of a batch) may
//! list a tool, prompt, resource or template the token does not allow, read as JSON readers
//! read it (the last of repeated keys).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{MAX_INPUT, verified_token};
use portcullis_gateway::fuzzing::{ListFilterStream, filter_json_list};
use portcullis_policy::{Constraints, VerifiedToken};
use serde_json::{Value, json};

const UPSTREAM: &str = "expenses";

static TOKEN: LazyLock<VerifiedToken> = LazyLock::new(|| {
    verified_token(json!({
        "type": "mcp_tools",
        "tools": ["expenses/submit_expense", "expenses/list_*"],
        "deny": ["expenses/list_secret*"],
        "prompts": ["expenses/summary"],
        "resources": ["expenses/file:///public/*"]
    }))
});

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let [flags, chunking, body @ ..] = data else {
        return;
    };
    let constraints = TOKEN
        .claims()
        .constraints
        .as_ref()
        .expect("has constraints");
    if flags & 1 == 1 {
        let out = filter_json_list(body, UPSTREAM, &TOKEN);
        if let Ok(message) = serde_json::from_slice::<Value>(&out) {
            check(&message, constraints);
        }
        return;
    }
    let mut stream = ListFilterStream::new(UPSTREAM, TOKEN.clone());
    let mut out = Vec::new();
    let mut rest = body;
    let mut state = u32::from(*chunking);
    while !rest.is_empty() {
        let size = if *chunking == 0 {
            rest.len()
        } else {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            1 + (state >> 16) as usize % 64
        };
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        // Pingora may flag the end on the last chunk or on an empty one after it.
        let ended = rest.is_empty() && flags & 2 == 0;
        let Some(bytes) = stream.feed(chunk, ended) else {
            return;
        };
        out.extend_from_slice(&bytes);
    }
    if body.is_empty() || flags & 2 != 0 {
        let Some(bytes) = stream.feed(&[], true) else {
            return;
        };
        out.extend_from_slice(&bytes);
    }
    for data in client_events(&out) {
        if let Ok(message) = serde_json::from_str::<Value>(&data) {
            check(&message, constraints);
        }
    }
});

/// Every entry of a list in a result (or in each result of a batch) is one the token allows.
fn check(message: &Value, constraints: &Constraints) {
    let messages = match message {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    for message in messages {
        let Some(result) = message.get("result") else {
            continue;
        };
        for (list, key) in [
            ("tools", "name"),
            ("prompts", "name"),
            ("resources", "uri"),
            ("resourceTemplates", "uriTemplate"),
        ] {
            let Some(entries) = result.get(list).and_then(Value::as_array) else {
                continue;
            };
            for name in entries.iter().filter_map(|e| e.get(key)?.as_str()) {
                let full = format!("{UPSTREAM}/{name}");
                let allowed = match list {
                    "tools" => constraints.allows_tool(&full, None),
                    "prompts" => constraints.allows_prompt(&full),
                    _ => constraints.allows_resource(&full),
                };
                assert!(allowed, "the client sees {list} entry {name:?}: {message}");
            }
        }
    }
}

/// The data of each event an SSE client dispatches from `stream`, by the WHATWG rules.
fn client_events(stream: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(stream);
    let mut rest = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let mut events = Vec::new();
    let mut data = String::new();
    // A last line without its end is never complete, and neither is its event.
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        rest = &rest[end
            + if rest[end..].starts_with("\r\n") {
                2
            } else {
                1
            }..];
        if line.is_empty() {
            if !data.is_empty() {
                data.pop(); // the LF after the last data line
                events.push(std::mem::take(&mut data));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            data.push_str(value);
            data.push('\n');
        }
    }
    events
}
