//! The gateway's reading of a request body (`jsonrpc::parse`) against `serde_json`'s, which
//! is what rmcp upstreams read it with.
//!
//! For any body the gateway does not refuse: `serde_json` reads it too, with as many
//! messages, and for each one the method, the tool name and the whole arguments of a
//! `tools/call`, and the resource or prompt a request names, are what `serde_json` reads.
//! Anything judged is then exactly what the upstream acts on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::MAX_INPUT;
use portcullis_gateway::fuzzing::{Reading, read_request};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(readings) = read_request(data) else {
        return;
    };
    let value: Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        Err(e) => panic!("the gateway read a body serde_json refuses: {e}"),
    };
    let elements: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    assert_eq!(readings.len(), elements.len(), "another number of messages");
    for (reading, element) in readings.iter().zip(elements) {
        assert_eq!(
            reading,
            &upstream_reading(element),
            "read differently: {element}"
        );
    }
});

/// What an upstream reading the message with `serde_json` acts on.
fn upstream_reading(message: &Value) -> Reading {
    let method = message.get("method").and_then(Value::as_str);
    let params = message.get("params");
    let param = |name: &str| params.and_then(|p| p.get(name));
    let string = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let reference = param("ref");
    let ref_type = reference
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str);
    let is_request = message.get("id").is_some();
    let (resource, prompt) = match (is_request, method) {
        (true, Some("resources/read" | "resources/subscribe" | "resources/unsubscribe")) => {
            (string(param("uri")), None)
        }
        (true, Some("prompts/get")) => (None, string(param("name"))),
        (true, Some("completion/complete")) if ref_type == Some("ref/resource") => {
            (string(reference.and_then(|r| r.get("uri"))), None)
        }
        (true, Some("completion/complete")) if ref_type == Some("ref/prompt") => {
            (None, string(reference.and_then(|r| r.get("name"))))
        }
        _ => (None, None),
    };
    Reading {
        method: method.map(str::to_owned),
        call: match (is_request, method) {
            (true, Some("tools/call")) => Some((
                string(param("name")).unwrap_or_default(),
                param("arguments").cloned().unwrap_or(Value::Null),
            )),
            _ => None,
        },
        resource,
        prompt,
    }
}
