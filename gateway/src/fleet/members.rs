//! A fleet's own conversations with its members: the upstream sessions it opens for an agent's
//! fleet session, and the `tools/list` it gathers from all of them.
//!
//! Members are asked concurrently. A member that fails (unreachable, an HTTP or JSON-RPC
//! error, a list that cannot be filtered) is left out of that list and logged: the agent sees
//! the tools of the members that answered, and a call to a tool of the failed one fails on its
//! own, with a clean upstream error.

use std::sync::Arc;

use portcullis_policy::VerifiedToken;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{self as fleet, Fleet, PageError};
use crate::clock;
use crate::list_filter::filter_message;
use crate::session::SessionError;
use crate::state::GatewayState;
use crate::upstream::Upstream;
use crate::upstream::client::{self, OwnRequest, UpstreamError};

/// The most pages read from one member for one list.
const MAX_PAGES: usize = 100;

/// Why a member could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MemberError {
    /// The request failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The member's answer is not what was asked for.
    #[error(transparent)]
    Page(#[from] PageError),
    /// The member would not speak the agent's revision.
    #[error("the member answered initialize with revision {answered:?}, not {asked:?}")]
    Revision {
        /// What the fleet session speaks.
        asked: String,
        /// What the member offered instead.
        answered: String,
    },
    /// The member said no to `initialize`.
    #[error("the member refused initialize: {0}")]
    Refused(String),
    /// The member has more pages than the gateway reads.
    #[error("more than {MAX_PAGES} pages of tools")]
    TooManyPages,
    /// The shared store could not say which member session the fleet session holds.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// One agent request on a fleet, as the members are asked on its behalf.
#[derive(Debug)]
pub(crate) struct OnBehalf<'a> {
    /// Shared gateway state (HTTP client, token minter, sessions, pins).
    pub(crate) state: &'a GatewayState,
    /// The fleet.
    pub(crate) fleet: &'a Fleet,
    /// The agent's verified token; members get tokens minted from it.
    pub(crate) token: &'a VerifiedToken,
    /// The agent's fleet session (revisions with sessions), or `None` (2026-07-28).
    pub(crate) session: Option<&'a str>,
    /// The revision the agent speaks.
    pub(crate) version: &'a str,
    /// The agent's `params._meta`, sent on to members in 2026-07-28.
    pub(crate) meta: Option<&'a Value>,
}

/// What `tools/list` gathered.
#[derive(Debug, Default)]
pub(crate) struct Gathered {
    /// Every tool the agent may see, namespaced, members in configuration order.
    pub(crate) tools: Vec<Box<RawValue>>,
    /// The shortest cache lifetime a member gave.
    pub(crate) ttl_ms: Option<u64>,
    /// Tools whose pinned definition changed, seen for the first time: `(member, tool)`.
    pub(crate) changed: Vec<(Arc<Upstream>, String)>,
}

impl OnBehalf<'_> {
    fn request(&self, member: &Upstream, session: Option<&str>) -> reqwest::RequestBuilder {
        OwnRequest {
            upstream: member,
            claims: self.token.claims(),
            method: reqwest::Method::POST,
            session_id: session.filter(|s| !s.is_empty()),
            protocol_version: Some(self.version),
        }
        .build(&self.state.http, &self.state.credentials)
    }

    /// The upstream session at `member` behind the agent's fleet session, opened now if it is
    /// the first request there. `""` stands for a member that keeps no sessions.
    pub(crate) async fn member_session(&self, member: &Upstream) -> Result<String, MemberError> {
        let Some(fleet_session) = self.session else {
            return Ok(String::new());
        };
        if let Some(id) = self
            .state
            .sessions
            .member(fleet_session, &member.name)
            .await?
        {
            return Ok(id);
        }
        let id = json!("portcullis-fleet-initialize");
        let initialize = json!({
            "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {
                "protocolVersion": self.version,
                // None: a member's sampling or elicitation request would have no way back.
                "capabilities": {},
                "clientInfo": {"name": "portcullis-gateway", "version": env!("CARGO_PKG_VERSION")},
            }
        });
        let request = OwnRequest {
            upstream: member,
            claims: self.token.claims(),
            method: reqwest::Method::POST,
            session_id: None,
            protocol_version: None,
        }
        .build(&self.state.http, &self.state.credentials);
        let answer = client::exchange(request, member, &id, &initialize).await?;
        let message: Value = serde_json::from_str(&answer.message)
            .map_err(|e| PageError::Malformed(e.to_string()))?;
        if let Some(error) = message.get("error") {
            return Err(MemberError::Refused(error.to_string()));
        }
        let answered = message["result"]["protocolVersion"]
            .as_str()
            .unwrap_or_default();
        if answered != self.version {
            return Err(MemberError::Revision {
                asked: self.version.to_owned(),
                answered: answered.to_owned(),
            });
        }
        let upstream_id = answer.session_id.unwrap_or_default();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = self
            .request(member, Some(&upstream_id))
            .timeout(member.connect_timeout + member.idle_timeout)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(initialized.to_string())
            .send()
            .await
            .map_err(UpstreamError::from)?;
        if !response.status().is_success() {
            return Err(UpstreamError::Status(response.status().as_u16()).into());
        }
        match self
            .state
            .sessions
            .bind_member(fleet_session, &member.name, upstream_id.clone())
            .await?
        {
            Some((id, true)) => Ok(id),
            // Another request of the agent's opened one first: use it, and end ours.
            Some((id, false)) => {
                end_member_sessions(
                    self.state,
                    self.token,
                    self.version,
                    vec![(member.name.clone(), upstream_id)],
                );
                Ok(id)
            }
            // The fleet session ended meanwhile.
            None => Err(UpstreamError::Status(404).into()),
        }
    }

    /// Whether every member speaks the stateless revision (asked with `server/discover`): only
    /// then can the fleet offer it, since a stateless agent's requests go to members as they
    /// are.
    pub(crate) async fn all_speak_stateless(&self) -> bool {
        let answers = futures_util::future::join_all(
            self.fleet
                .members
                .iter()
                .map(|member| self.speaks_stateless(member)),
        )
        .await;
        answers.into_iter().all(|speaks| speaks)
    }

    async fn speaks_stateless(&self, member: &Upstream) -> bool {
        let known = &self.state.stateless_members;
        if let Some(speaks) = known.get(member, clock::now()) {
            return speaks;
        }
        let speaks = self.ask_stateless(member).await;
        known.set(member, speaks, clock::now());
        speaks
    }

    async fn ask_stateless(&self, member: &Upstream) -> bool {
        let id = json!("portcullis-fleet-discover");
        let mut body =
            json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": {}});
        if let Some(meta) = self.meta {
            body["params"]["_meta"] = meta.clone();
        }
        let request = self
            .request(member, None)
            .header("mcp-method", "server/discover");
        let answer = match client::exchange(request, member, &id, &body).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(member = %member.name, "server/discover: {e}");
                return false;
            }
        };
        serde_json::from_str::<Value>(&answer.message).is_ok_and(|message| {
            message["result"]["supportedVersions"]
                .as_array()
                .is_some_and(|versions| versions.iter().any(|v| v == fleet::STATELESS_REVISION))
        })
    }

    /// Every member's tools that the agent may see, namespaced and merged.
    pub(crate) async fn list_tools(&self) -> Gathered {
        let lists = futures_util::future::join_all(
            self.fleet
                .members
                .iter()
                .map(|member| self.member_tools(member)),
        )
        .await;
        let mut gathered = Gathered::default();
        for (member, list) in self.fleet.members.iter().zip(lists) {
            match list {
                Ok(list) => {
                    gathered.tools.extend(list.tools);
                    gathered.ttl_ms = shortest(gathered.ttl_ms, list.ttl_ms);
                    gathered.changed.extend(list.changed);
                }
                Err(e) => tracing::warn!(
                    fleet = %self.fleet.name, member = %member.name,
                    "leaving the member's tools out of the fleet's list: {e}"
                ),
            }
        }
        gathered
    }

    async fn member_tools(&self, member: &Arc<Upstream>) -> Result<Gathered, MemberError> {
        let session = self.member_session(member).await?;
        let pins = self.state.pins.as_ref();
        let mut gathered = Gathered::default();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let id = json!(format!("portcullis-fleet-list-{page}"));
            let mut params = json!({});
            if let Some(cursor) = &cursor {
                params["cursor"] = json!(cursor);
            }
            if let Some(meta) = self.meta {
                params["_meta"] = meta.clone();
            }
            let body =
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params});
            let mut request = self.request(member, Some(&session));
            if self.version == fleet::STATELESS_REVISION {
                request = request.header("mcp-method", "tools/list");
            }
            let answer = client::exchange(request, member, &id, &body).await?;
            let mut changed = Vec::new();
            let filtered = filter_message(
                &answer.message,
                &member.name,
                Some(self.token),
                pins,
                &mut changed,
            );
            let page = fleet::parse_page(filtered.as_deref().unwrap_or(&answer.message))?;
            for tool in &page.tools {
                gathered.tools.push(fleet::rename(&member.name, tool)?);
            }
            gathered.ttl_ms = shortest(gathered.ttl_ms, page.ttl_ms);
            gathered
                .changed
                .extend(changed.into_iter().map(|tool| (member.clone(), tool)));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(gathered),
            }
        }
        Err(MemberError::TooManyPages)
    }
}

fn shortest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Ends upstream sessions a fleet session held (`(member, upstream session)`), in the
/// background: the agent's DELETE does not wait on its members.
pub(crate) fn end_member_sessions(
    state: &GatewayState,
    token: &VerifiedToken,
    version: &str,
    sessions: Vec<(String, String)>,
) {
    let routes = state.routes.load();
    let requests: Vec<_> = sessions
        .into_iter()
        .filter(|(_, id)| !id.is_empty())
        .filter_map(|(member, id)| {
            let member = routes.upstream(&member)?;
            let request = OwnRequest {
                upstream: member,
                claims: token.claims(),
                method: reqwest::Method::DELETE,
                session_id: Some(&id),
                protocol_version: Some(version),
            };
            Some(request.build(&state.http, &state.credentials))
        })
        .collect();
    if requests.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for request in requests {
            if let Err(e) = request.send().await {
                tracing::debug!("ending a fleet member's session: {e}");
            }
        }
    });
}
