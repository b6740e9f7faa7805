//! `conformance`: the upstream the official MCP conformance suite's server scenarios expect.
//!
//! `@modelcontextprotocol/conformance server` tests a server by calling a fixed surface: tools
//! named `test_simple_text`, `test_sampling`, …, resources under `test://`, prompts named
//! `test_simple_prompt`, … To run the suite against the *gateway*, something behind the gateway
//! has to provide that surface; this module is that something. Its answers are the ones the
//! scenarios check for, and nothing more: the point is what the gateway does to the traffic
//! (sessions, SSE streams, server-to-client requests, progress, filtering), not the fixture.
//!
//! Tools are a table ([`TOOLS`]) so `tools/list` and `tools/call` cannot drift apart. For
//! protocol 2026-07-28 the fixture also has the multi round-trip tools (`input_required`),
//! `subscriptions/listen` with list-change triggers, and the capability, logging and
//! `Mcp-Param` header probes. `tools/list` can be paged, to test filtering across pages. The
//! server does not check the gateway's downstream token: the suite's traffic is what is under
//! test, and the token path is covered by the expenses server.
//!
//! Sampling and logging are deprecated as of 2026-07-28 (SEP-2577), but 2025-11-25 requires
//! them and the suite tests them, hence the module-wide `allow(deprecated)`.
//!
//! Long because the conformance suite's fixture server must offer every tool, resource and
//! prompt the suite calls; each is a few lines.

#![allow(deprecated)]

mod input_required;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    AudioContent, CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
    CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock,
    CreateMessageRequestParams, ElicitRequestParams, ElicitationSchema, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, ImageContent, Implementation, JsonObject,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
    ProgressNotificationParam, Prompt, PromptArgument, PromptMessage, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, Resource, ResourceContents,
    ResourceTemplate, Role, SamplingMessage, ServerCapabilities, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, Tool,
    UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// A 1×1 PNG: the smallest image the image scenarios accept.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// An empty WAV file.
const WAV: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA=";
/// Pause between the notifications a tool sends, so they arrive as separate events.
const STEP: Duration = Duration::from_millis(20);

/// Every tool: name, description, and the properties of its input (all strings; the first
/// one, if any, is required).
const TOOLS: &[(&str, &str, &[&str])] = &[
    ("test_simple_text", "Returns one text block", &[]),
    ("test_image_content", "Returns one image block", &[]),
    ("test_audio_content", "Returns one audio block", &[]),
    (
        "test_embedded_resource",
        "Returns one embedded text resource",
        &[],
    ),
    (
        "test_multiple_content_types",
        "Returns text, an image and an embedded resource",
        &[],
    ),
    (
        "test_tool_with_logging",
        "Sends three log messages while it runs",
        &[],
    ),
    (
        "test_tool_with_progress",
        "Reports progress 0, 50 and 100 of 100",
        &[],
    ),
    ("test_error_handling", "Always fails with a tool error", &[]),
    (
        "test_sampling",
        "Asks the client's model to complete a prompt",
        &["prompt"],
    ),
    (
        "test_elicitation",
        "Asks the user for a username and an email",
        &["message"],
    ),
    (
        "test_elicitation_sep1034_defaults",
        "Asks the user for values that all have defaults",
        &[],
    ),
    (
        "test_elicitation_sep1330_enums",
        "Asks the user to choose from every kind of enum",
        &[],
    ),
    (
        "test_missing_capability",
        "Needs sampling, and says so when the client did not declare it",
        &[],
    ),
    (
        "test_logging_tool",
        "Logs only at the level the request asked for",
        &[],
    ),
    (
        "test_trigger_tool_change",
        "Announces a change of the tool list to subscribers",
        &[],
    ),
    (
        "test_trigger_prompt_change",
        "Announces a change of the prompt list to subscribers",
        &[],
    ),
];

/// The tool whose `region` argument is mirrored in an `Mcp-Param-Region` header (SEP-2243).
const HEADER_TOOL: &str = "test_custom_header";

/// The tool whose input schema uses JSON Schema 2020-12 keywords (`$schema`, `$defs`, `$ref`,
/// `$anchor`, `allOf`/`anyOf`, `if`/`then`/`else`: SEP-1613, SEP-2106), which must reach the
/// client unchanged.
const JSON_SCHEMA_TOOL: &str = "json_schema_2020_12_tool";

fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {"address": {"$anchor": "address", "type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"}
        }}},
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contact": {"type": "string"}
        },
        "allOf": [{"anyOf": [{"required": ["name"]}, {"required": ["address"]}]}],
        "if": {"required": ["address"]},
        "then": {"required": ["name"]},
        "else": {"properties": {"contact": {"minLength": 1}}},
        "additionalProperties": false
    })
}

const PROMPTS: &[(&str, &str)] = &[
    ("test_simple_prompt", "A prompt without arguments"),
    ("test_prompt_with_arguments", "A prompt with two arguments"),
    (
        "test_prompt_with_embedded_resource",
        "A prompt that embeds a resource",
    ),
    ("test_prompt_with_image", "A prompt that carries an image"),
];

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn tool(name: &'static str, description: &'static str, properties: &[&str]) -> Tool {
    let props: JsonObject = properties
        .iter()
        .map(|p| ((*p).to_owned(), json!({"type": "string"})))
        .collect();
    let required: Vec<&str> = properties.iter().take(1).copied().collect();
    Tool::new(
        name,
        description,
        object(json!({"type": "object", "properties": props, "required": required})),
    )
}

fn text(value: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(value)])
}

fn text_resource(uri: &str, mime: &str, body: impl Into<String>) -> ResourceContents {
    ResourceContents::TextResourceContents {
        uri: uri.into(),
        mime_type: Some(mime.into()),
        text: body.into(),
        meta: None,
    }
}

/// The schemas of the three elicitation tools.
fn elicitation_schema(tool: &str) -> Value {
    match tool {
        "test_elicitation_sep1034_defaults" => json!({"type": "object", "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "score": {"type": "number", "default": 95.5},
            "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "default": true}
        }}),
        "test_elicitation_sep1330_enums" => json!({"type": "object", "properties": {
            "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"}
            ]},
            "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "items": {"anyOf": [
                {"const": "value1", "title": "First Choice"},
                {"const": "value2", "title": "Second Choice"},
                {"const": "value3", "title": "Third Choice"}
            ]}}
        }}),
        _ => json!({"type": "object", "properties": {
            "username": {"type": "string", "description": "Your user name"},
            "email": {"type": "string", "description": "Your email address"}
        }, "required": ["username", "email"]}),
    }
}

/// A change of a list, announced on `subscriptions/listen` streams.
#[derive(Debug, Clone, Copy)]
enum ListChange {
    Tools,
    Prompts,
}

/// The fixture server. rmcp makes one per session or stateless request; clones share the
/// subscribed resources, the list-change announcements and the request-state key.
#[derive(Debug, Clone)]
pub struct Fixture {
    subscriptions: Arc<Mutex<HashSet<String>>>,
    changes: broadcast::Sender<ListChange>,
    states: input_required::States,
    page_size: Option<usize>,
}

impl Default for Fixture {
    fn default() -> Self {
        Self {
            subscriptions: Arc::default(),
            changes: broadcast::channel(16).0,
            states: input_required::States::default(),
            page_size: None,
        }
    }
}

/// Every tool the fixture lists.
fn tools() -> Vec<Tool> {
    let table = TOOLS
        .iter()
        .map(|(name, description, properties)| tool(name, description, properties));
    let rounds = input_required::TOOLS
        .iter()
        .map(|(name, description)| tool(name, description, &[]));
    let mut tools: Vec<Tool> = table.chain(rounds).collect();
    tools.push(Tool::new(
        JSON_SCHEMA_TOOL,
        "Takes input described with JSON Schema 2020-12 keywords",
        object(json_schema_2020_12()),
    ));
    tools.push(Tool::new(
        HEADER_TOOL,
        "Echoes a region that is also sent as the Mcp-Param-Region header",
        object(json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"}
        }, "required": ["region"]})),
    ));
    tools
}

/// Severity order of log levels (rmcp's `LoggingLevel` has none).
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl Fixture {
    async fn elicit(
        &self,
        tool: &str,
        message: String,
        cx: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        let schema: ElicitationSchema = match serde_json::from_value(elicitation_schema(tool)) {
            Ok(schema) => schema,
            Err(e) => return CallToolResult::error(vec![ContentBlock::text(e.to_string())]),
        };
        let request = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: schema,
        };
        match cx.peer.create_elicitation(request).await {
            Ok(answer) => text(format!(
                "action={}, content={}",
                serde_json::to_value(&answer.action).unwrap_or_default(),
                serde_json::to_value(&answer.content).unwrap_or_default()
            )),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!("elicitation: {e}"))]),
        }
    }
}

fn argument<'a>(arguments: Option<&'a JsonObject>, name: &str, default: &'a str) -> &'a str {
    arguments
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .unwrap_or(default)
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_logging()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new(
            "portcullis-conformance-fixture",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let all = tools();
        let Some(size) = self.page_size else {
            return Ok(ListToolsResult::with_all_items(all));
        };
        // The cursor is the offset of the page, which is all a fixture needs.
        let start = match request.and_then(|r| r.cursor) {
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| ErrorData::invalid_params("unknown cursor", None))?,
            None => 0,
        };
        let mut page =
            ListToolsResult::with_all_items(all.iter().skip(start).take(size).cloned().collect());
        page.next_cursor = (start + size < all.len()).then(|| (start + size).to_string());
        Ok(page)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let capabilities = cx.client_capabilities();
        if let Some(answer) = self.states.call(&request, capabilities.clone()) {
            return answer;
        }
        let args = request.arguments.as_ref();
        let result = match request.name.as_ref() {
            "test_missing_capability" => {
                if capabilities.and_then(|c| c.sampling).is_none() {
                    return Err(ErrorData::missing_required_client_capability(
                        ClientCapabilities::builder().enable_sampling().build(),
                    ));
                }
                text("The client can sample")
            }
            "test_logging_tool" => {
                // Stateless requests get log messages only at the level they asked for.
                if let Some(level) = cx.meta.log_level()
                    && severity(level) <= severity(LoggingLevel::Info)
                {
                    let log =
                        LoggingMessageNotificationParam::new(LoggingLevel::Info, json!("logged"));
                    let _sent = cx.peer.notify_logging_message(log).await;
                }
                text("Logging tool completed")
            }
            "test_trigger_tool_change" | "test_trigger_prompt_change" => {
                let change = match request.name.as_ref() {
                    "test_trigger_tool_change" => ListChange::Tools,
                    _ => ListChange::Prompts,
                };
                // No subscriber is not an error.
                let _receivers = self.changes.send(change);
                text("Change announced")
            }
            HEADER_TOOL => text(format!("region={}", argument(args, "region", ""))),
            "test_simple_text" => text("This is a simple text response for testing."),
            "test_image_content" => {
                CallToolResult::success(vec![ContentBlock::image(PNG, "image/png")])
            }
            "test_audio_content" => CallToolResult::success(vec![ContentBlock::Audio(
                AudioContent::new(WAV, "audio/wav"),
            )]),
            "test_embedded_resource" => {
                CallToolResult::success(vec![ContentBlock::resource(text_resource(
                    "test://embedded-resource",
                    "text/plain",
                    "This is an embedded resource content.",
                ))])
            }
            "test_multiple_content_types" => CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG, "image/png"),
                ContentBlock::resource(text_resource(
                    "test://mixed-content-resource",
                    "application/json",
                    r#"{"test":"data","value":123}"#,
                )),
            ]),
            "test_tool_with_logging" => {
                for message in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ] {
                    let log =
                        LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message));
                    // A client gone mid-call is not the tool's failure.
                    let _sent = cx.peer.notify_logging_message(log).await;
                    tokio::time::sleep(STEP).await;
                }
                text("Logging test completed")
            }
            "test_tool_with_progress" => {
                if let Some(token) = cx.meta.get_progress_token() {
                    for progress in [0.0, 50.0, 100.0] {
                        let note = ProgressNotificationParam::new(token.clone(), progress)
                            .with_total(100.0);
                        let _sent = cx.peer.notify_progress(note).await;
                        tokio::time::sleep(STEP).await;
                    }
                }
                text("Progress test completed")
            }
            "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )]),
            "test_sampling" => {
                let prompt = argument(args, "prompt", "Hello");
                let request =
                    CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
                match cx.peer.create_message(request).await {
                    Ok(answer) => {
                        let reply = answer
                            .message
                            .content
                            .first()
                            .and_then(|c| c.as_text())
                            .map_or_else(String::new, |t| t.text.clone());
                        text(format!("LLM response: {reply}"))
                    }
                    Err(e) => {
                        CallToolResult::error(vec![ContentBlock::text(format!("sampling: {e}"))])
                    }
                }
            }
            JSON_SCHEMA_TOOL => text(format!("Hello, {}!", argument(args, "name", "world"))),
            name @ ("test_elicitation"
            | "test_elicitation_sep1034_defaults"
            | "test_elicitation_sep1330_enums") => {
                let message = argument(args, "message", "Please provide your information");
                self.elicit(name, message.to_owned(), &cx).await
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool: {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new("test://static-text", "Static text").with_mime_type("text/plain"),
            Resource::new("test://static-binary", "Static binary").with_mime_type("image/png"),
            Resource::new("test://watched-resource", "Watched resource")
                .with_mime_type("text/plain"),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("test://template/{id}/data", "Data by id")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => text_resource(
                uri,
                "text/plain",
                "This is the content of the static text resource.",
            ),
            "test://watched-resource" => text_resource(uri, "text/plain", "Watched content."),
            "test://static-binary" => ResourceContents::BlobResourceContents {
                uri: uri.into(),
                mime_type: Some("image/png".into()),
                blob: PNG.into(),
                meta: None,
            },
            _ => match uri
                .strip_prefix("test://template/")
                .and_then(|rest| rest.strip_suffix("/data"))
            {
                Some(id) => text_resource(
                    uri,
                    "application/json",
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")})
                        .to_string(),
                ),
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!("no resource {uri}"),
                        Some(json!({"uri": uri})),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp narrows this to what the capabilities advertise.
        Some(requested.clone())
    }

    async fn listen(&self, cx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.changes.subscribe();
        loop {
            let change = tokio::select! {
                () = cx.cancelled() => return Ok(()),
                change = changes.recv() => change,
            };
            // The sink drops what the subscriber did not ask for: that is the filter.
            let _sent = match change {
                Ok(ListChange::Tools) => cx.sink().notify_tool_list_changed().await,
                Ok(ListChange::Prompts) => cx.sink().notify_prompt_list_changed().await,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            };
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = PROMPTS
            .iter()
            .chain([input_required::PROMPT].iter())
            .map(|(name, description)| {
                let arguments = (*name == "test_prompt_with_arguments").then(|| {
                    vec![
                        PromptArgument::new("arg1").with_required(true),
                        PromptArgument::new("arg2").with_required(false),
                    ]
                });
                Prompt::new(*name, Some(*description), arguments)
            })
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name == input_required::PROMPT.0 {
            return self.states.prompt(&request);
        }
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple test prompt.",
            )],
            "test_prompt_with_arguments" => {
                let args = request.arguments.as_ref();
                vec![PromptMessage::new_text(
                    Role::User,
                    format!(
                        "Prompt with arguments: arg1='{}', arg2='{}'",
                        argument(args, "arg1", ""),
                        argument(args, "arg2", "")
                    ),
                )]
            }
            "test_prompt_with_embedded_resource" => vec![
                PromptMessage::new_text(Role::User, "Here is a resource:"),
                PromptMessage::new_resource(
                    Role::User,
                    "test://static-text".into(),
                    Some("text/plain".into()),
                    Some("Resource content for prompt".into()),
                    None,
                    None,
                    None,
                ),
            ],
            "test_prompt_with_image" => vec![
                PromptMessage::new_text(Role::User, "Here is an image:"),
                PromptMessage::new(
                    Role::User,
                    ContentBlock::Image(ImageContent::new(PNG, "image/png")),
                ),
            ],
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt: {other}"),
                    None,
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let values: Vec<String> = match &request.r#ref {
            Reference::Resource(_) => vec!["1".into(), "2".into(), "3".into()],
            Reference::Prompt(_) => vec!["Alice".into(), "Bob".into(), "Charlie".into()],
            _ => Vec::new(),
        };
        let prefix = request.argument.value.as_str();
        let values = values
            .into_iter()
            .filter(|v| v.starts_with(prefix))
            .collect();
        let info = CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}

/// The fixture as an axum router, with MCP at `/mcp`. `tools_page_size` splits `tools/list`
/// into pages of that many tools (the suite expects one page: `None`).
pub fn router(tools_page_size: Option<usize>) -> axum::Router {
    let fixture = Fixture {
        page_size: tools_page_size,
        ..Fixture::default()
    };
    let mcp = StreamableHttpService::new(
        move || Ok(fixture.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    axum::Router::new().nest_service("/mcp", mcp)
}

/// Serves [`router`] on `listener` until the process ends.
pub async fn serve(listener: TcpListener, tools_page_size: Option<usize>) -> std::io::Result<()> {
    axum::serve(listener, router(tools_page_size)).await
}

/// The names of every tool, in `tools/list` order.
pub fn tool_names() -> Vec<String> {
    tools().into_iter().map(|t| t.name.into_owned()).collect()
}
