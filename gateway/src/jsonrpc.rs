//! Reading the JSON-RPC message an agent POSTs, once, strictly.
//!
//! The body is parsed with [`portcullis_policy::strict_json`], so a message with a duplicate key
//! at any depth (`{"name":"list_expenses","name":"delete_all_expenses"}`) is refused: the
//! gateway would judge one reading and the upstream might act on the other. A batch is read
//! element by element into [`Message::Batch`]; whether batches are allowed at all (only in
//! protocol revision 2025-03-26) is the proxy's decision, and it judges every element.
//!
//! A method name is what the upstream will dispatch on, so it is read as exactly as the
//! upstream reads it: a name with whitespace or control characters is refused, and in the
//! namespaces the gateway judges (`tools/`, `resources/`, `prompts/`, `completion/`, in any
//! case) only the methods MCP defines pass. `Tools/Call` or `tools/call ` naming a denied tool
//! would otherwise skip judgement while an upstream that folds case or trims might run it.
//! Every request that names a resource or a prompt (`resources/read`, `resources/subscribe`,
//! `resources/unsubscribe`, `prompts/get`, and `completion/complete` through its `ref`)
//! carries an [`Access`] the grant is checked against.

use serde_json::Value;
use serde_json::value::RawValue;

use crate::jsonrpc_error::{APPROVAL_INPUT_KEY, GATEWAY_STATE_PREFIX, GatewayError};

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
        /// The client declared URL-mode elicitation: at `initialize` (for the session), or
        /// in this request's own `_meta` (revision 2026-07-28).
        url_elicitation: bool,
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
    /// A retry (2026-07-28) carrying the `requestState` the gateway itself issued when it
    /// held the call for approval: the gateway's to take out before the upstream sees it.
    pub gateway_state: bool,
}

/// What the gateway changes in a request on its way upstream.
#[derive(Debug, Default)]
pub(crate) struct Rewrite<'a> {
    /// `params.name` of a fleet's `tools/call`, for its member.
    pub(crate) tool: Option<&'a str>,
    /// Take out the gateway's own `requestState` and input response (a retry after approval).
    pub(crate) strip_gateway_state: bool,
    /// W3C trace context fields (`traceparent`, `tracestate`) for `params._meta` (SEP-414).
    pub(crate) trace: &'a [(String, String)],
    /// Leave a `traceparent` the request's `_meta` has already.
    pub(crate) keep_trace: bool,
}

impl Rewrite<'_> {
    /// Whether it changes anything.
    pub(crate) fn changes(&self) -> bool {
        self.tool.is_some() || self.strip_gateway_state || !self.trace.is_empty()
    }
}

/// The body of a request with `rewrite` applied; every other byte of the params (arguments,
/// numbers as written) kept.
pub(crate) fn rewrite(body: &[u8], rewrite: &Rewrite<'_>) -> Result<Vec<u8>, String> {
    type Object = std::collections::BTreeMap<String, Box<RawValue>>;
    fn raw<T: serde::Serialize + ?Sized>(value: &T) -> Box<RawValue> {
        serde_json::value::to_raw_value(value).expect("strings and raw values serialise")
    }
    let mut message: Object = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut params: Object = match message.get("params") {
        Some(params) => serde_json::from_str(params.get()).map_err(|e| e.to_string())?,
        None => Object::new(),
    };
    if !rewrite.trace.is_empty() {
        let mut meta: Object = match params.get("_meta") {
            Some(meta) => serde_json::from_str(meta.get()).map_err(|e| e.to_string())?,
            None => Object::new(),
        };
        if !(rewrite.keep_trace && meta.contains_key("traceparent")) {
            meta.remove("tracestate");
            for (key, value) in rewrite.trace {
                meta.insert(key.clone(), raw(value));
            }
            params.insert("_meta".to_owned(), raw(&meta));
        }
    }
    if let Some(tool) = rewrite.tool {
        params.insert("name".to_owned(), raw(tool));
    }
    if rewrite.strip_gateway_state {
        params.remove("requestState");
        if let Some(responses) = params.remove("inputResponses") {
            let mut responses: Object =
                serde_json::from_str(responses.get()).map_err(|e| e.to_string())?;
            responses.remove(APPROVAL_INPUT_KEY);
            if !responses.is_empty() {
                params.insert("inputResponses".to_owned(), raw(&responses));
            }
        }
    }
    message.insert("params".to_owned(), raw(&params));
    Ok(serde_json::to_vec(&message).expect("raw values serialise"))
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

/// The namespaces whose methods the gateway judges or filters; compared case-insensitively.
const JUDGED_NAMESPACES: [&str; 4] = ["tools/", "resources/", "prompts/", "completion/"];

/// Every method MCP defines in [`JUDGED_NAMESPACES`] (revisions 2025-03-26 to 2026-07-28).
const KNOWN_METHODS: [&str; 10] = [
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
];

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

/// What a request names that the grant must allow, if it names a resource or a prompt.
fn access(method: &str, params: Option<&Value>) -> Result<Option<Access>, String> {
    let string = |value: Option<&Value>, what: &str| {
        value
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{method} needs a string {what}"))
    };
    let field = |name: &str| params.and_then(|p| p.get(name));
    Ok(Some(match method {
        "resources/read" => Access::Resource(string(field("uri"), "params.uri")?),
        // Removed in 2026-07-28, where a server answers them 404: one that names no resource
        // has nothing to judge and goes on to that answer; one that names any is judged.
        "resources/subscribe" | "resources/unsubscribe" => match field("uri") {
            None => return Ok(None),
            uri => Access::Resource(string(uri, "params.uri")?),
        },
        "prompts/get" => Access::Prompt(string(field("name"), "params.name")?),
        "completion/complete" => {
            let reference = field("ref");
            match reference
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str)
            {
                Some("ref/prompt") => Access::Prompt(string(
                    reference.and_then(|r| r.get("name")),
                    "params.ref.name",
                )?),
                Some("ref/resource") => Access::Resource(string(
                    reference.and_then(|r| r.get("uri")),
                    "params.ref.uri",
                )?),
                _ => {
                    return Err(format!(
                        "{method} needs params.ref of type ref/prompt or ref/resource"
                    ));
                }
            }
        }
        _ => return Ok(None),
    }))
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
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("a method name is printable ASCII without spaces"));
    }
    let lower = method.to_ascii_lowercase();
    if JUDGED_NAMESPACES.iter().any(|ns| lower.starts_with(ns))
        && !KNOWN_METHODS.contains(&method.as_str())
    {
        return Err(GatewayError::MethodNotFound {
            id: error_id.clone(),
            method,
            stateless: false,
        });
    }
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
    let params = object.get("params");
    let access = access(&method, params).map_err(|reason| invalid(&reason))?;
    let url_elicitation = declares_url_elicitation(&method, params);
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
        let gateway_state = params
            .get("requestState")
            .and_then(Value::as_str)
            .is_some_and(|state| state.starts_with(GATEWAY_STATE_PREFIX));
        Some(ToolCall {
            name,
            arguments,
            gateway_state,
        })
    } else {
        None
    };
    Ok(Message::Request {
        id,
        method,
        call,
        access,
        url_elicitation,
    })
}

/// Whether the client declares `elicitation.url`: in `initialize`'s capabilities, or in the
/// request's `_meta` (2026-07-28 sends the client's capabilities with every request).
fn declares_url_elicitation(method: &str, params: Option<&Value>) -> bool {
    let capabilities = if method == "initialize" {
        params.and_then(|p| p.get("capabilities"))
    } else {
        params
            .and_then(|p| p.get("_meta"))
            .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities"))
    };
    capabilities
        .and_then(|c| c.get("elicitation"))
        .and_then(|e| e.get("url"))
        .is_some_and(Value::is_object)
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
                    arguments: json!({"amount": 5}),
                    gateway_state: false,
                }),
                access: None,
                url_elicitation: false,
            }
        );
    }

    #[test]
    fn a_fleet_call_gets_the_members_tool_name_and_keeps_its_arguments_exactly() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"mail__send","arguments":{"amount":1.10,"to":"x"},"_meta":{"progressToken":3}}}"#;
        let out = rewrite(
            body,
            &Rewrite {
                tool: Some("send"),
                ..Rewrite::default()
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["params"]["name"], "send");
        assert_eq!(value["params"]["_meta"]["progressToken"], 3);
        assert_eq!(value["id"], 7);
        assert!(text.contains(r#""amount":1.10"#), "{text}");
    }

    #[test]
    fn trace_context_goes_into_meta_unless_the_request_keeps_its_own() {
        let trace = [(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )];
        let set = |body: &[u8], keep_trace| {
            let out = rewrite(
                body,
                &Rewrite {
                    trace: &trace,
                    keep_trace,
                    ..Rewrite::default()
                },
            );
            serde_json::from_slice::<Value>(&out.unwrap()).unwrap()
        };
        let bare = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert_eq!(
            set(bare, true)["params"]["_meta"]["traceparent"],
            trace[0].1
        );
        let own = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","_meta":{"traceparent":"theirs","tracestate":"a=b","progressToken":1}}}"#;
        assert_eq!(set(own, true)["params"]["_meta"]["traceparent"], "theirs");
        let replaced = set(own, false);
        assert_eq!(replaced["params"]["_meta"]["traceparent"], trace[0].1);
        assert!(replaced["params"]["_meta"].get("tracestate").is_none());
        assert_eq!(replaced["params"]["_meta"]["progressToken"], 1);
    }

    #[test]
    fn a_retry_loses_the_gateways_own_state_and_keeps_everything_else() {
        let body = br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"pay","arguments":{"amount":3.10},"requestState":"portcullis-approval:abc","inputResponses":{"portcullis_approval":{"action":"accept"},"theirs":{"action":"accept"}}}}"#;
        let strip = Rewrite {
            strip_gateway_state: true,
            ..Rewrite::default()
        };
        let text = String::from_utf8(rewrite(body, &strip).unwrap()).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(value["params"].get("requestState").is_none());
        assert_eq!(
            value["params"]["inputResponses"],
            json!({"theirs": {"action": "accept"}})
        );
        assert!(text.contains(r#""amount":3.10"#), "{text}");
        let Message::Request {
            call: Some(call), ..
        } = parse(body).unwrap()
        else {
            panic!("a call")
        };
        assert!(call.gateway_state);
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

    #[test]
    fn method_names_that_only_look_like_judged_ones_are_refused() {
        for method in [
            "Tools/Call",
            "TOOLS/CALL",
            "tools/Call",
            "Resources/Read",
            "prompts/Get",
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method,
                "params": {"name": "delete_all_expenses", "uri": "file:///x"}});
            assert!(
                matches!(
                    parse(body.to_string().as_bytes()),
                    Err(GatewayError::MethodNotFound { .. })
                ),
                "{method}"
            );
        }
        for method in [
            "tools/call ",
            " tools/call",
            "tools/call\u{1}",
            "tools/\u{0}call",
            "tools/caLL\t",
            "",
        ] {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": method,
                "params": {"name": "delete_all_expenses"}});
            assert!(
                matches!(
                    parse(body.to_string().as_bytes()),
                    Err(GatewayError::InvalidRequest { .. } | GatewayError::MethodNotFound { .. })
                ),
                "{method:?}"
            );
        }
        // Methods outside the judged namespaces are the upstream's business.
        let custom = br#"{"jsonrpc":"2.0","id":1,"method":"x-vendor/thing"}"#;
        assert_eq!(parse(custom).unwrap().method(), Some("x-vendor/thing"));
    }

    #[test]
    fn every_request_naming_a_resource_or_prompt_carries_it_to_be_judged() {
        let cases = [
            (
                json!({"method": "resources/subscribe", "params": {"uri": "file:///a"}}),
                Access::Resource("file:///a".into()),
            ),
            (
                json!({"method": "resources/unsubscribe", "params": {"uri": "file:///a"}}),
                Access::Resource("file:///a".into()),
            ),
            (
                json!({"method": "completion/complete", "params": {
                "ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": ""}}}),
                Access::Prompt("p".into()),
            ),
            (
                json!({"method": "completion/complete", "params": {
                "ref": {"type": "ref/resource", "uri": "file:///{x}"}, "argument": {"name": "x", "value": ""}}}),
                Access::Resource("file:///{x}".into()),
            ),
        ];
        for (mut request, expected) in cases {
            request["jsonrpc"] = json!("2.0");
            request["id"] = json!(1);
            match parse(request.to_string().as_bytes()).unwrap() {
                Message::Request { access, .. } => assert_eq!(access, Some(expected), "{request}"),
                other => panic!("{other:?}"),
            }
        }
        let nothing_named = br#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe"}"#;
        assert!(matches!(
            parse(nothing_named).unwrap(),
            Message::Request { access: None, .. }
        ));
        let not_a_string =
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":7}}"#;
        assert!(matches!(
            parse(not_a_string),
            Err(GatewayError::InvalidRequest { .. })
        ));
        let unknown_ref = br#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other"}}}"#;
        assert!(matches!(
            parse(unknown_ref),
            Err(GatewayError::InvalidRequest { .. })
        ));
    }
}
