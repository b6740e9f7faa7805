//! The fixture's multi round-trip tools (SEP-2322, protocol 2026-07-28).
//!
//! In 2026-07-28 a server no longer sends requests to the client in the middle of a call.
//! Instead it answers with an `InputRequiredResult` that lists what it needs (an elicitation,
//! a sampling, the client's roots) and an opaque `requestState`; the client retries the same
//! call with `inputResponses` and the state echoed back. Through the gateway, each retry is a
//! new `tools/call` or `prompts/get`, judged like any other.
//!
//! The state is sealed (HMAC, bound to the tool's name) with a key made at start, so a client
//! that edits it gets an error, never a result built on state the server did not issue.

use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock,
    CreateMessageRequest, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
    ElicitResult, ElicitationAction, ElicitationSchema, GetPromptRequestParams, GetPromptResponse,
    GetPromptResult, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    ListRootsRequest, PromptMessage, RequestStateCodec, Role, SamplingMessage, SealOptions,
};
use serde_json::{Value, json};

/// The tools, with their descriptions.
pub(super) const TOOLS: &[(&str, &str)] = &[
    (
        "test_input_required_result_elicitation",
        "Asks for the user's name, then greets them",
    ),
    (
        "test_input_required_result_sampling",
        "Asks the client's model a question",
    ),
    (
        "test_input_required_result_list_roots",
        "Asks for the client's roots",
    ),
    (
        "test_input_required_result_request_state",
        "Asks for a confirmation, keeping state",
    ),
    (
        "test_input_required_result_multiple_inputs",
        "Asks for three inputs at once",
    ),
    (
        "test_input_required_result_multi_round",
        "Asks in two rounds",
    ),
    (
        "test_input_required_result_tampered_state",
        "Refuses a state it did not issue",
    ),
    (
        "test_input_required_result_capabilities",
        "Asks only for what the client declared",
    ),
    (
        "test_streaming_elicitation",
        "Needs an elicitation, asked for in its result, never on the stream",
    ),
];

/// The prompt that needs input before it can be rendered.
pub(super) const PROMPT: (&str, &str) = (
    "test_input_required_result_prompt",
    "Asks for context before rendering",
);

fn elicit(message: &str, field: &str, kind: &str) -> InputRequest {
    let schema =
        json!({"type": "object", "properties": {field: {"type": kind}}, "required": [field]});
    let requested_schema: ElicitationSchema =
        serde_json::from_value(schema).expect("a flat object schema is an elicitation schema");
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema,
        },
    ))
}

fn sample(question: &str, max_tokens: u32) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(question)],
        max_tokens,
    )))
}

fn roots() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

fn ask(requests: Vec<(&str, InputRequest)>, state: Option<String>) -> InputRequiredResult {
    let requests: InputRequests = requests
        .into_iter()
        .map(|(key, request)| (key.to_owned(), request))
        .collect();
    InputRequiredResult::new(Some(requests), state)
}

fn done(text: impl Into<String>) -> Result<CallToolResponse, ErrorData> {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
}

fn invalid(what: &str) -> ErrorData {
    ErrorData::invalid_params(what.to_owned(), None)
}

/// The content of an accepted elicitation answered under `key`: `None` when there is no
/// answer (ask again), an error when the answer is not an elicitation result.
fn accepted(responses: Option<&InputResponses>, key: &str) -> Result<Option<Value>, ErrorData> {
    let Some(answer) = responses.and_then(|r| r.get(key)) else {
        return Ok(None);
    };
    let answer: ElicitResult = serde_json::from_value(answer.clone()).map_err(|_| {
        invalid(&format!(
            "inputResponses.{key} is not an elicitation result"
        ))
    })?;
    Ok(match answer.action {
        ElicitationAction::Accept => answer.content,
        _ => None,
    })
}

/// A text field of an accepted elicitation.
fn field(content: &Value, name: &str) -> Result<String, ErrorData> {
    content[name]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(&format!("the answer has no text field {name:?}")))
}

/// Seals and opens `requestState` for the tools.
#[derive(Clone)]
pub(super) struct States {
    codec: RequestStateCodec,
}

impl std::fmt::Debug for States {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("States")
    }
}

impl Default for States {
    fn default() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source is available");
        Self {
            codec: RequestStateCodec::try_new(key.to_vec()).expect("a 32-byte key is long enough"),
        }
    }
}

impl States {
    fn seal(&self, tool: &str, state: &Value) -> String {
        let options = SealOptions::new().associated_data(tool.as_bytes());
        self.codec
            .seal_json_with(state, &options)
            .expect("a JSON value serialises")
    }

    fn open(&self, tool: &str, state: &str) -> Result<Value, ErrorData> {
        self.codec
            .open_json_with(state, tool.as_bytes())
            .map_err(|_| invalid("requestState failed verification"))
    }

    /// Runs tool `name`, or returns `None` when it is not one of these.
    pub(super) fn call(
        &self,
        request: &CallToolRequestParams,
        capabilities: Option<ClientCapabilities>,
    ) -> Option<Result<CallToolResponse, ErrorData>> {
        let name = request.name.as_ref();
        let responses = request.input_responses.as_ref();
        let state = match request.request_state.as_deref() {
            Some(sealed) => match self.open(name, sealed) {
                Ok(state) => Some(state),
                Err(e) => return Some(Err(e)),
            },
            None => None,
        };
        let answered = |key: &str| responses.is_some_and(|r| r.contains_key(key));
        let result = match name {
            "test_input_required_result_elicitation" => match accepted(responses, "user_name") {
                Ok(Some(content)) => {
                    field(&content, "name").and_then(|n| done(format!("Hello, {n}!")))
                }
                Ok(None) => Ok(ask(
                    vec![("user_name", elicit("What is your name?", "name", "string"))],
                    None,
                )
                .into()),
                Err(e) => Err(e),
            },
            "test_input_required_result_sampling" => {
                match responses.and_then(|r| r.get("capital_question")) {
                    Some(answer) => done(format!(
                        "The model said: {}",
                        answer["content"]["text"].as_str().unwrap_or("")
                    )),
                    None => Ok(ask(
                        vec![(
                            "capital_question",
                            sample("What is the capital of France?", 100),
                        )],
                        None,
                    )
                    .into()),
                }
            }
            "test_input_required_result_list_roots" => {
                match responses.and_then(|r| r.get("client_roots")) {
                    Some(answer) => done(format!("Roots: {}", answer["roots"])),
                    None => Ok(ask(vec![("client_roots", roots())], None).into()),
                }
            }
            "test_input_required_result_request_state"
            | "test_input_required_result_tampered_state" => {
                match (state, accepted(responses, "confirm")) {
                    (Some(_), Ok(Some(_))) => done("state-ok"),
                    (_, Err(e)) => Err(e),
                    _ => {
                        let sealed = self.seal(name, &json!({"round": 1}));
                        Ok(ask(
                            vec![("confirm", elicit("Please confirm", "ok", "boolean"))],
                            Some(sealed),
                        )
                        .into())
                    }
                }
            }
            "test_input_required_result_multiple_inputs" => {
                if state.is_some()
                    && ["user_name", "greeting", "client_roots"]
                        .iter()
                        .all(|k| answered(k))
                {
                    done("All three inputs received")
                } else {
                    let sealed = self.seal(name, &json!({"round": 1}));
                    Ok(ask(
                        vec![
                            ("user_name", elicit("What is your name?", "name", "string")),
                            ("greeting", sample("Generate a greeting", 50)),
                            ("client_roots", roots()),
                        ],
                        Some(sealed),
                    )
                    .into())
                }
            }
            "test_input_required_result_multi_round" => self.multi_round(name, state, responses),
            "test_streaming_elicitation" => match capabilities.and_then(|c| c.elicitation) {
                Some(_) => Ok(ask(
                    vec![("user_name", elicit("What is your name?", "name", "string"))],
                    None,
                )
                .into()),
                None => Err(ErrorData::missing_required_client_capability(
                    ClientCapabilities::builder().enable_elicitation().build(),
                )),
            },
            "test_input_required_result_capabilities" => {
                let declared = capabilities.unwrap_or_default();
                let mut requests = Vec::new();
                if declared.sampling.is_some() {
                    requests.push((
                        "capital_question",
                        sample("What is the capital of France?", 100),
                    ));
                }
                if declared.elicitation.is_some() {
                    requests.push(("user_name", elicit("What is your name?", "name", "string")));
                }
                if declared.roots.is_some() {
                    requests.push(("client_roots", roots()));
                }
                if responses.is_some_and(|r| !r.is_empty()) {
                    done("Inputs received")
                } else if requests.is_empty() {
                    Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ))
                } else {
                    Ok(ask(requests, None).into())
                }
            }
            _ => return None,
        };
        Some(result)
    }

    fn multi_round(
        &self,
        name: &str,
        state: Option<Value>,
        responses: Option<&InputResponses>,
    ) -> Result<CallToolResponse, ErrorData> {
        let round = state.as_ref().and_then(|s| s["round"].as_u64());
        match round {
            Some(1) => match accepted(responses, "step1")? {
                Some(content) => {
                    let sealed =
                        self.seal(name, &json!({"round": 2, "name": field(&content, "name")?}));
                    let step2 = elicit("Step 2: What is your favorite color?", "color", "string");
                    Ok(ask(vec![("step2", step2)], Some(sealed)).into())
                }
                None => Err(invalid("round 1 needs inputResponses.step1")),
            },
            Some(2) => match accepted(responses, "step2")? {
                Some(content) => {
                    let who = state
                        .as_ref()
                        .and_then(|s| s["name"].as_str())
                        .unwrap_or("");
                    done(format!("{who} likes {}", field(&content, "color")?))
                }
                None => Err(invalid("round 2 needs inputResponses.step2")),
            },
            _ => {
                let sealed = self.seal(name, &json!({"round": 1}));
                let step1 = elicit("Step 1: What is your name?", "name", "string");
                Ok(ask(vec![("step1", step1)], Some(sealed)).into())
            }
        }
    }

    /// Renders [`PROMPT`] once the client has said what context to use.
    pub(super) fn prompt(
        &self,
        request: &GetPromptRequestParams,
    ) -> Result<GetPromptResponse, ErrorData> {
        match accepted(request.input_responses.as_ref(), "user_context")? {
            Some(content) => {
                let context = field(&content, "context")?;
                Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                    Role::User,
                    format!("Use this context: {context}"),
                )])
                .into())
            }
            None => {
                let question = elicit("What context should the prompt use?", "context", "string");
                Ok(ask(vec![("user_context", question)], None).into())
            }
        }
    }
}
