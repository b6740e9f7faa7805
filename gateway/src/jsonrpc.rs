//! Reading the JSON-RPC message an agent POSTs, once, strictly.
//!
//! The body is parsed with [`portcullis_policy::strict_json`], so a message with a duplicate key
//! at any depth (`{"name":"list_expenses","name":"delete_all_expenses"}`) is refused: the
//! gateway would judge one reading and the upstream might act on the other. A batch is read
//! element by element into [`Message::Batch`]; whether batches are allowed at all (only in
//! protocol revision 2025-03-26) is the proxy's decision, and it judges every element.

use serde_json::Value;

use crate::jsonrpc_error::GatewayError;

/// A client-to-server message, as far as the gateway needs to understand it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request (has an `id`).
    Request {
        /// Its id, echoed in errors.
        id: Value,
        /// Its method.
        method: String,
        /// For `tools/call`: which tool with which arguments.
        call: Option<ToolCall>,
        /// For `resources/read` and `prompts/get`: what is read or used.
        access: Option<Access>,
    },
    /// A notification (no `id`).
    Notification {
        /// Its method.
        method: String,
    },
    /// A response to a server-initiated request.
    Response,
    /// A JSON-RPC batch (protocol revision 2025-03-26 only), in order.
    Batch(Vec<Message>),
}

/// A resource read or prompt use, named as the upstream knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// `resources/read` of this URI.
    Resource(String),
    /// `prompts/get` of this prompt.
    Prompt(String),
}

/// The part of a `tools/call` the policy judges.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCall {
    /// The tool's name at the upstream.
    pub name: String,
    /// Its arguments (`Null` when absent).
    pub arguments: Value,
}

impl Message {
    /// The JSON-RPC method, if this is a request or notification.
    pub(crate) fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method } => Some(method),
            Message::Response | Message::Batch(_) => None,
        }
    }

    /// The request id, to answer a refused request with; `Null` for anything else.
    pub(crate) fn id(&self) -> Value {
        match self {
            Message::Request { id, .. } => id.clone(),
            _ => Value::Null,
        }
    }

    /// The message itself, or each element of a batch.
    pub(crate) fn elements(&self) -> &[Message] {
        match self {
            Message::Batch(elements) => elements,
            single => std::slice::from_ref(single),
        }
    }
}

/// The most elements a batch may have.
pub(crate) const MAX_BATCH: usize = 100;

/// Parses one JSON-RPC message or batch.
pub(crate) fn parse(body: &[u8]) -> Result<Message, GatewayError> {
    let value = portcullis_policy::strict_json::from_slice(body)
        .map_err(|e| GatewayError::Parse(e.to_string()))?;
    match value {
        Value::Array(elements) => {
            if elements.is_empty() || elements.len() > MAX_BATCH {
                return Err(GatewayError::invalid(
                    Value::Null,
                    &format!("a batch holds 1 to {MAX_BATCH} messages"),
                ));
            }
            let elements = elements
                .into_iter()
                .map(|element| match element {
                    Value::Array(_) => Err(GatewayError::invalid(
                        Value::Null,
                        "a batch cannot contain a batch",
                    )),
                    element => parse_value(element),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if elements.iter().any(|m| m.method() == Some("initialize")) {
                return Err(GatewayError::invalid(
                    Value::Null,
                    "initialize cannot be part of a batch",
                ));
            }
            Ok(Message::Batch(elements))
        }
        value => parse_value(value),
    }
}

fn parse_value(value: Value) -> Result<Message, GatewayError> {
    let mut object = match value {
        Value::Object(object) => object,
        _ => {
            return Err(GatewayError::invalid(
                Value::Null,
                "a JSON-RPC message is an object",
            ));
        }
    };
    let id = object.remove("id");
    let error_id = id.clone().unwrap_or(Value::Null);
    let invalid = |reason: &str| GatewayError::invalid(error_id.clone(), reason);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }
    if let Some(id) = &id
        && !(id.is_string() || id.is_i64() || id.is_u64())
    {
        return Err(invalid("id must be a string or an integer"));
    }
    let Some(method) = object.remove("method") else {
        return if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            Ok(Message::Response)
        } else {
            Err(invalid("neither a request, a notification nor a response"))
        };
    };
    let Value::String(method) = method else {
        return Err(invalid("method must be a string"));
    };
    let Some(id) = id else {
        // A request method sent without an id would skip judgement (only requests are judged)
        // while an upstream might still act on it: refuse it.
        if !method.starts_with("notifications/") {
            return Err(invalid(
                "only notifications/* methods may be sent without an id",
            ));
        }
        return Ok(Message::Notification { method });
    };
    let access = match method.as_str() {
        "resources/read" | "prompts/get" => {
            let field = if method == "resources/read" {
                "uri"
            } else {
                "name"
            };
            let value = object
                .get("params")
                .and_then(|p| p.get(field))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&format!("{method} needs a string params.{field}")))?
                .to_owned();
            Some(if method == "resources/read" {
                Access::Resource(value)
            } else {
                Access::Prompt(value)
            })
        }
        _ => None,
    };
    let call = if method == "tools/call" {
        let mut params = match object.remove("params") {
            Some(Value::Object(params)) => params,
            _ => return Err(invalid("tools/call needs params")),
        };
        let name = match params.remove("name") {
            Some(Value::String(name)) => name,
            _ => return Err(invalid("tools/call needs a string params.name")),
        };
        let arguments = params.remove("arguments").unwrap_or(Value::Null);
        if !(arguments.is_object() || arguments.is_null()) {
            return Err(invalid("params.arguments must be an object"));
        }
        Some(ToolCall { name, arguments })
    } else {
        None
    };
    Ok(Message::Request {
        id,
        method,
        call,
        access,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tools_call_is_read_with_its_arguments() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"submit_expense","arguments":{"amount":5}}}"#;
        assert_eq!(
            parse(body).unwrap(),
            Message::Request {
                id: json!(7),
                method: "tools/call".into(),
                call: Some(ToolCall {
                    name: "submit_expense".into(),
                    arguments: json!({"amount": 5})
                }),
                access: None,
            }
        );
    }

    #[test]
    fn duplicate_tool_name_is_refused() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_expenses","name":"delete_all_expenses"}}"#;
        assert!(matches!(parse(body), Err(GatewayError::Parse(_))));
    }

    #[test]
    fn duplicate_argument_is_refused() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"submit_expense","arguments":{"amount":5,"amount":5000}}}"#;
        assert!(matches!(parse(body), Err(GatewayError::Parse(_))));
    }

    #[test]
    fn resource_reads_and_prompt_uses_are_read_for_judgement() {
        let read = br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#;
        assert!(matches!(
            parse(read).unwrap(),
            Message::Request { access: Some(Access::Resource(uri)), .. } if uri == "file:///etc/passwd"
        ));
        let prompt = br#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"leak"}}"#;
        assert!(matches!(
            parse(prompt).unwrap(),
            Message::Request { access: Some(Access::Prompt(name)), .. } if name == "leak"
        ));
        let nameless = br#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{}}"#;
        assert!(matches!(
            parse(nameless),
            Err(GatewayError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn a_batch_is_read_element_by_element_and_a_call_inside_is_visible() {
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_all_expenses"}},{"jsonrpc":"2.0","method":"notifications/progress"}]"#;
        let message = parse(batch).unwrap();
        let elements = message.elements();
        assert_eq!(elements.len(), 3);
        assert!(
            matches!(&elements[1], Message::Request { call: Some(call), .. } if call.name == "delete_all_expenses")
        );
        for refused in [
            &b"[]"[..],
            br#"[[{"jsonrpc":"2.0","id":1,"method":"ping"}]]"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}]"#,
        ] {
            assert!(parse(refused).is_err(), "{}", String::from_utf8_lossy(refused));
        }
    }

    #[test]
    fn arguments_that_are_not_an_object_are_refused() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#;
        assert!(matches!(
            parse(body),
            Err(GatewayError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn notifications_and_responses_are_told_apart() {
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(
            parse(note).unwrap().method(),
            Some("notifications/initialized")
        );
        let response = br#"{"jsonrpc":"2.0","id":"s1","result":{}}"#;
        assert_eq!(parse(response).unwrap(), Message::Response);
    }

    #[test]
    fn tools_call_without_an_id_is_refused_not_passed_as_a_notification() {
        let body =
            br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_all_expenses"}}"#;
        assert!(matches!(
            parse(body),
            Err(GatewayError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn wrong_version_or_null_id_is_refused() {
        assert!(parse(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).is_err());
        assert!(parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).is_err());
    }
}
