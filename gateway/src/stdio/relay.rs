//! Relaying MCP between a bridge's HTTP sessions and a stdio program.
//!
//! [`Relay`] is the MCP server each HTTP session talks to: it answers `initialize` with what
//! the program answered when it started, and passes every other request and notification to
//! the program unchanged, its answer back, with the progress the program reported for it
//! (see [`super::progress`]). [`ChildClient`] is the MCP client the program talks to: for a
//! program of its own session, it passes on that session's other notifications and requests
//! (sampling, elicitation, roots). A pooled program serves every session at once, so what it
//! says outside a request's progress cannot be told apart by session: it is not passed on,
//! and its requests are refused.
//!
//! A request's cancellation (an agent's `notifications/cancelled`, or the gateway's after a
//! revocation) reaches the program as a `notifications/cancelled` for its own request id.

#![expect(
    deprecated,
    reason = "clients before 2026-07-28 still send logging/setLevel and resources/subscribe, \
              and the relay passes on what they send"
)]

use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CancelledNotification,
    CancelledNotificationParam, ClientConfig, ClientRequest, ClientResult, CompleteRequest,
    CompleteRequestParams, CompleteResult, ErrorCode, ErrorData, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsRequestMethod, ListPromptsResult,
    ListResourceTemplatesRequestMethod, ListResourceTemplatesResult, ListResourcesRequestMethod,
    ListResourcesResult, ListToolsRequestMethod, ListToolsResult, Notification,
    PaginatedRequestParams, PingRequest, ProgressNotificationParam, ReadResourceRequest,
    ReadResourceRequestParams, ReadResourceResponse, RequestOptionalParam,
    RootsListChangedNotification, ServerConfig, ServerNotification, ServerRequest, ServerResult,
    SetLevelRequest, SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams,
    UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, Peer, PeerRequestOptions, RequestContext, Service};
use rmcp::{RoleClient, RoleServer, ServerHandler, ServiceError};
use tokio::sync::OnceCell;

use super::child::{Program, Programs, StartError};

/// The MCP server of one HTTP session of a bridge.
pub(super) struct Relay {
    programs: Programs,
    /// This session's own program (`per_session`), once started.
    own: OnceCell<Arc<Program>>,
}

impl Relay {
    pub(super) fn new(programs: Programs) -> Self {
        Self {
            programs,
            own: OnceCell::new(),
        }
    }

    /// The program that serves this session, started if need be: for a session of its own,
    /// with the client the agent declared at `initialize`.
    async fn program(
        &self,
        agent: Option<&InitializeRequestParams>,
        session: &Peer<RoleServer>,
    ) -> Result<Arc<Program>, ErrorData> {
        let started = if self.programs.per_session() {
            self.own
                .get_or_try_init(|| {
                    let info = agent.cloned().unwrap_or_else(gateway_client);
                    let session = session.clone();
                    self.programs
                        .for_session(ChildClient::for_session(info, session))
                })
                .await
                .cloned()
        } else {
            self.programs.pooled().await
        };
        started.map_err(|e: StartError| {
            tracing::warn!("{e}");
            ErrorData::internal_error(format!("the stdio server is unavailable: {e}"), None)
        })
    }
}

impl Relay {
    /// Relays one request of this session to its program.
    async fn relay(
        &self,
        request: impl Into<ClientRequest>,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let program = self.program(None, &context.peer).await?;
        call(&program, request.into(), context).await
    }
}

/// Relays method `$method`: its request, built from the agent's parameters, and the one
/// kind of answer it has.
macro_rules! relayed {
    ($($method:ident($params:ty) -> $answer:ident = $request:expr;)*) => {$(
        async fn $method(
            &self,
            params: $params,
            context: RequestContext<RoleServer>,
        ) -> Result<$answer, ErrorData> {
            match self.relay($request(params), context).await? {
                ServerResult::$answer(answer) => Ok(answer),
                other => Err(unexpected(&other)),
            }
        }
    )*};
}

/// Relays method `$method`, whose answer is empty.
macro_rules! relayed_empty {
    ($($method:ident($params:ty) = $request:expr;)*) => {$(
        async fn $method(
            &self,
            params: $params,
            context: RequestContext<RoleServer>,
        ) -> Result<(), ErrorData> {
            self.relay($request(params), context).await.map(drop)
        }
    )*};
}

/// A list request with the agent's paging, or none.
fn list<M: Default>(
    params: Option<PaginatedRequestParams>,
) -> RequestOptionalParam<M, PaginatedRequestParams> {
    RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    }
}

impl ServerHandler for Relay {
    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        context.peer.set_peer_info(request.clone());
        let program = self.program(Some(&request), &context.peer).await?;
        // The program was initialized when it started; the agent gets its answer.
        let info = program.service.peer_info().ok_or_else(|| {
            ErrorData::internal_error("the stdio server did not say who it is", None)
        })?;
        let mut result = InitializeResult::new(info.capabilities.clone());
        result.protocol_version = info.protocol_version.clone();
        if let Some(server) = &info.server_info {
            result.server_info = server.clone();
        }
        result.instructions = info.instructions.clone();
        result.meta = info.meta.clone();
        Ok(result)
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.relay(PingRequest::default(), context).await.map(drop)
    }

    async fn call_tool(
        &self,
        params: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.relay(CallToolRequest::new(params), context).await? {
            ServerResult::CallToolResult(result) => Ok(result.into()),
            ServerResult::InputRequiredResult(result) => Ok(result.into()),
            ServerResult::CreateTaskResult(task) => Ok(CallToolResponse::Task(task)),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_prompt(
        &self,
        params: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        match self.relay(GetPromptRequest::new(params), context).await? {
            ServerResult::GetPromptResult(result) => Ok(GetPromptResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn read_resource(
        &self,
        params: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match self
            .relay(ReadResourceRequest::new(params), context)
            .await?
        {
            ServerResult::ReadResourceResult(result) => Ok(ReadResourceResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            other => Err(unexpected(&other)),
        }
    }

    relayed! {
        complete(CompleteRequestParams) -> CompleteResult = CompleteRequest::new;
        list_tools(Option<PaginatedRequestParams>) -> ListToolsResult = list::<ListToolsRequestMethod>;
        list_prompts(Option<PaginatedRequestParams>) -> ListPromptsResult = list::<ListPromptsRequestMethod>;
        list_resources(Option<PaginatedRequestParams>) -> ListResourcesResult = list::<ListResourcesRequestMethod>;
        list_resource_templates(Option<PaginatedRequestParams>) -> ListResourceTemplatesResult = list::<ListResourceTemplatesRequestMethod>;
    }

    relayed_empty! {
        set_level(SetLevelRequestParams) = SetLevelRequest::new;
        subscribe(SubscribeRequestParams) = SubscribeRequest::new;
        unsubscribe(UnsubscribeRequestParams) = UnsubscribeRequest::new;
    }

    async fn on_roots_list_changed(&self, _context: NotificationContext<RoleServer>) {
        if let Some(program) = self.own.get()
            && let Err(e) = program
                .service
                .send_notification(RootsListChangedNotification::default().into())
                .await
        {
            tracing::debug!("a notification for the stdio server was lost: {e}");
        }
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::default()
    }
}

/// An answer of another kind than the request's.
fn unexpected(answer: &ServerResult) -> ErrorData {
    let kind = serde_json::to_value(answer)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        })
        .unwrap_or_default();
    ErrorData::internal_error(
        format!("the stdio server answered with another kind of result ({kind})"),
        None,
    )
}

/// Sends one request to the program and waits for its answer, passing on its progress and
/// the request's cancellation.
async fn call(
    program: &Program,
    request: ClientRequest,
    context: RequestContext<RoleServer>,
) -> Result<ServerResult, ErrorData> {
    let agents_token = context.meta.get_progress_token();
    // The agent's `_meta` (trace context included) goes on; rmcp sets a progress token of
    // its own, mapped back below.
    let mut options = PeerRequestOptions::no_options();
    options.meta = Some(context.meta.clone());
    let handle = program
        .service
        .send_cancellable_request(request, options)
        .await
        .map_err(relay_error)?;
    let (id, token) = (handle.id.clone(), handle.progress_token.clone());
    let mut progress = program.progress.route(&token);
    let forward = |mut update: ProgressNotificationParam| {
        let peer = context.peer.clone();
        let agents_token = agents_token.clone();
        async move {
            // Only a request that asked for progress gets it, under its own token.
            let Some(agents_token) = agents_token else {
                return;
            };
            update.progress_token = agents_token;
            let notification = ServerNotification::ProgressNotification(Notification::new(update));
            if let Err(e) = peer.send_notification(notification).await {
                tracing::debug!("progress of the stdio server was lost: {e}");
            }
        }
    };
    let response = handle.await_response();
    tokio::pin!(response);
    let answer = loop {
        tokio::select! {
            answer = &mut response => break answer.map_err(relay_error),
            Some(update) = progress.recv() => forward(update).await,
            () = context.ct.cancelled() => {
            let cancelled = CancelledNotification::new(CancelledNotificationParam::new(
                Some(id),
                Some("cancelled by the client".to_owned()),
            ));
            if let Err(e) = program.service.send_notification(cancelled.into()).await {
                tracing::debug!("could not tell the stdio server to cancel: {e}");
            }
                break Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None));
            }
        }
    };
    // What the program reported before it answered goes first.
    program.progress.forget(&token);
    while let Ok(update) = progress.try_recv() {
        forward(update).await;
    }
    answer
}

/// The program's own error as it is; a transport failure as an internal error.
fn relay_error(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(format!("the stdio server failed: {other}"), None),
    }
}

/// How the gateway introduces itself to a pooled program (and to a session's program when
/// the agent never said).
fn gateway_client() -> ClientConfig {
    let mut info = ClientConfig::default();
    info.client_info = Implementation::new("portcullis-gateway", env!("CARGO_PKG_VERSION"));
    info
}

/// The MCP client a program talks to.
pub(super) struct ChildClient {
    info: ClientConfig,
    /// The session a program of its own serves.
    session: Option<Peer<RoleServer>>,
}

impl ChildClient {
    pub(super) fn pooled() -> Self {
        Self {
            info: gateway_client(),
            session: None,
        }
    }

    fn for_session(info: ClientConfig, session: Peer<RoleServer>) -> Self {
        Self {
            info,
            session: Some(session),
        }
    }
}

impl Service<RoleClient> for ChildClient {
    async fn handle_request(
        &self,
        request: ServerRequest,
        _context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        match (request, &self.session) {
            (ServerRequest::PingRequest(_), _) => Ok(ClientResult::empty(())),
            (request, Some(session)) => session.send_request(request).await.map_err(relay_error),
            (_, None) => Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "a pooled stdio server serves many sessions and cannot ask any one client",
                None,
            )),
        }
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        _context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        if let ServerNotification::CancelledNotification(_) = notification {
            return Ok(());
        }
        if let Err(e) = session.send_notification(notification).await {
            tracing::debug!("a notification of the stdio server was lost: {e}");
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}
