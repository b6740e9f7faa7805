//! After a kill, the upstream is told to stop: `notifications/cancelled` for each in-flight
//! request, then a `DELETE` of its MCP session, each with a credential the gateway mints for
//! the purpose. This runs in the background, after the agents' streams have closed.

use std::collections::HashMap;
use std::sync::Arc;

use http::header;

use super::LiveWork;
use crate::upstream::Credentials;
use crate::upstream::client::OwnRequest;

/// Sends the upstreams what they must hear of killed work, on the gateway's own account.
#[derive(Debug, Clone)]
pub(crate) struct Canceller {
    http: reqwest::Client,
    credentials: Credentials,
}

impl Canceller {
    /// Sends through `http`, with `credentials`.
    pub(crate) fn new(http: reqwest::Client, credentials: Credentials) -> Self {
        Self { http, credentials }
    }

    /// Tells the upstream of each killed piece of work to stop: `notifications/cancelled` for
    /// an in-flight request, then `DELETE` of its MCP session (once per session), each with a
    /// token the gateway mints for the purpose.
    pub(crate) fn cancel(&self, killed: Vec<Arc<LiveWork>>) {
        if !killed.is_empty() {
            tokio::spawn(self.clone().cancel_when_ended(killed));
        }
    }

    async fn cancel_when_ended(self, killed: Vec<Arc<LiveWork>>) {
        // The agent-facing streams close first: cancelling upstream waits until the killed
        // requests have ended here (only this list still holds them) or CANCEL_WAIT has
        // passed, so the two do not compete for the same cores; even the requests are built
        // only then. The upstream socket's read side is already shut, so nothing more of the
        // work reaches the agent meanwhile.
        let deadline = std::time::Instant::now() + CANCEL_WAIT;
        while std::time::Instant::now() < deadline
            && killed.iter().any(|work| Arc::strong_count(work) > 1)
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let sessions = self.upstream_cancellations(killed);
        // A revocation can end a thousand streams at once; the upstream should not get a
        // thousand connections at once in return.
        futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(sessions.into_values()),
            CANCEL_CONCURRENCY,
            |(cancels, end)| async move {
                let steps = cancels
                    .into_iter()
                    .map(|c| ("cancellation", c))
                    .chain([("session end", end)]);
                for (what, request) in steps {
                    match request.send().await {
                        Ok(response) if response.status().is_success() => {}
                        Ok(response) => {
                            tracing::warn!("upstream refused a {what}: {}", response.status())
                        }
                        Err(e) => tracing::warn!("sending a {what} upstream failed: {e}"),
                    }
                }
            },
        )
        .await;
    }

    /// Per upstream session of killed work: first every cancellation, then one DELETE, in that
    /// order (a session's GET stream and its calls die together, and a DELETE that overtook a
    /// cancellation would leave the upstream nothing to cancel in).
    fn upstream_cancellations(
        &self,
        killed: Vec<Arc<LiveWork>>,
    ) -> HashMap<(String, String), (Vec<reqwest::RequestBuilder>, reqwest::RequestBuilder)> {
        let mut sessions: HashMap<
            (String, String),
            (Vec<reqwest::RequestBuilder>, reqwest::RequestBuilder),
        > = HashMap::new();
        for work in killed {
            let target = &work.upstream;
            let Some(session_id) = target.session_id.as_deref() else {
                continue;
            };
            let upstream = &target.upstream;
            let request = |method| {
                OwnRequest {
                    upstream,
                    claims: work.token().claims(),
                    method,
                    session_id: Some(session_id),
                    protocol_version: target.protocol_version.as_deref(),
                }
                .build(&self.http, &self.credentials)
            };
            let (cancels, _) = sessions
                .entry((upstream.name.clone(), session_id.to_owned()))
                .or_insert_with(|| (Vec::new(), request(reqwest::Method::DELETE)));
            if let Some(id) = &target.request_id {
                let body = serde_json::json!({
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "authority revoked"}
                });
                cancels.push(
                    request(reqwest::Method::POST)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(body.to_string()),
                );
            }
        }
        sessions
    }
}

/// The longest the upstream's cancellations wait for the killed streams to end at the gateway.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How many cancellations of killed work are in flight to upstreams at once.
const CANCEL_CONCURRENCY: usize = 32;
