//! Fleets: one MCP endpoint, `/mcp/{fleet}`, over several upstreams, their tools federated
//! under namespaced names.
//!
//! Tool names are unique only within one server, so an agent that sees several servers
//! through one endpoint needs names that say which server is meant: `{member}__{tool}`, with
//! the member's name from the operator's configuration, never from the upstream (MCP
//! 2026-07-28 `server/tools` §Tool Names; a server naming itself could shadow another). A
//! member's name may not contain `__` nor end in `_`, so a namespaced name splits exactly one
//! way, at its first `__`: two members can never produce the same name, and a call is routed
//! back without guessing. A name that does not split into a member and a tool is an unknown
//! tool (−32602), never a call to some default upstream.
//!
//! The gateway is the fleet's MCP server. It answers `initialize`, `server/discover` and
//! `ping` itself, advertising tools only. `tools/list` is gathered from every member (every
//! page), each member's list filtered by the token and the tool pins exactly as on the
//! member's own endpoint, then namespaced and merged into one page in configuration order.
//! `tools/call` is mapped back to its member, judged against `{member}/{tool}` like any call
//! (the same grants work on both endpoints), and proxied to the member with all the usual
//! machinery: a minted token for that member alone, streaming, timeouts, the kill switch.
//! [`members`] holds the fleet's own conversations with its members; the fleet's endpoint
//! itself is admitted in `proxy::fleet`.
//!
//! The gateway speaks to members in the agent's protocol revision. Toward a legacy agent it
//! opens one upstream session per member, lazily, on the agent's behalf and bound to the
//! agent's fleet session; it declares no client capabilities there, so members send no
//! sampling or elicitation requests that would have no way back. Toward a 2026-07-28 agent
//! each request is self-contained and forwarded with the agent's `_meta`; multi round-trip
//! results come back as results and retry under the same namespaced name. So the fleet offers
//! 2026-07-28 in `server/discover` only when every member does; otherwise it answers as a
//! server of the session revisions, and agents in auto mode fall back to `initialize`.

pub(crate) mod members;
pub(crate) mod stateless;

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::jsonrpc_error::SUPPORTED_PROTOCOL_VERSIONS;
use crate::upstream::Upstream;

/// Between a member's name and its tool's.
pub(crate) const SEPARATOR: &str = "__";

/// The newest revision that still has sessions; an `initialize` asking for an unknown one is
/// answered with this (MCP lifecycle: the server proposes its own latest).
const LATEST_SESSION_REVISION: &str = "2025-11-25";

/// The revision in which every request stands alone.
pub(crate) const STATELESS_REVISION: &str = "2026-07-28";

/// A validated fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// The name in `/mcp/{name}`.
    pub name: String,
    /// The resource identifier tokens for this fleet carry in `aud`.
    pub resource: String,
    /// Its members, in the order their tools are listed.
    pub members: Vec<Arc<Upstream>>,
}

impl Fleet {
    /// The member and the member's own tool name behind a namespaced tool name, if it names
    /// a member of this fleet.
    pub fn route<'a>(&self, namespaced: &'a str) -> Option<(&Arc<Upstream>, &'a str)> {
        let (member, tool) = namespaced.split_once(SEPARATOR)?;
        if tool.is_empty() {
            return None;
        }
        let member = self.members.iter().find(|m| m.name == member)?;
        Some((member, tool))
    }
}

/// Whether `name` can be a fleet member: namespaced names made with it split only one way.
pub(crate) fn valid_member_name(name: &str) -> bool {
    !name.contains(SEPARATOR) && !name.ends_with('_')
}

/// The name an agent sees for `member`'s `tool`.
pub(crate) fn namespaced(member: &str, tool: &str) -> String {
    format!("{member}{SEPARATOR}{tool}")
}

fn server_info(fleet: &Fleet) -> Value {
    json!({"name": format!("portcullis-fleet-{}", fleet.name), "version": env!("CARGO_PKG_VERSION")})
}

/// The fleet's answer to `initialize`: the revision asked for if it has sessions, else ours.
pub(crate) fn initialize_result(fleet: &Fleet, requested: Option<&str>) -> Value {
    let version = requested
        .filter(|v| *v != STATELESS_REVISION && SUPPORTED_PROTOCOL_VERSIONS.contains(v))
        .unwrap_or(LATEST_SESSION_REVISION);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {}},
        "serverInfo": server_info(fleet),
    })
}

/// The fleet's answer to `server/discover` (2026-07-28).
pub(crate) fn discover_result(fleet: &Fleet) -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": [STATELESS_REVISION],
        "capabilities": {"tools": {}},
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {"io.modelcontextprotocol/serverInfo": server_info(fleet)},
    })
}

/// One page of a member's `tools/list`, already filtered for the agent.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Page {
    /// The tools, each kept byte for byte.
    pub tools: Vec<Box<RawValue>>,
    /// Where the member's next page starts.
    #[serde(rename = "nextCursor", default)]
    pub next_cursor: Option<String>,
    /// How long the member lets the page be cached (2026-07-28).
    #[serde(rename = "ttlMs", default)]
    pub ttl_ms: Option<u64>,
}

/// Why a member's page could not be merged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// The member answered with a JSON-RPC error.
    #[error("the member refused tools/list: {0}")]
    Refused(String),
    /// The answer is not a `tools/list` result.
    #[error("not a tools/list result: {0}")]
    Malformed(String),
}

/// Reads a member's (filtered) `tools/list` response.
pub(crate) fn parse_page(response: &str) -> Result<Page, PageError> {
    #[derive(serde::Deserialize)]
    struct Response {
        result: Option<Page>,
        error: Option<Value>,
    }
    let response: Response =
        serde_json::from_str(response).map_err(|e| PageError::Malformed(e.to_string()))?;
    match (response.result, response.error) {
        (Some(page), None) => Ok(page),
        (None, Some(error)) => Err(PageError::Refused(error.to_string())),
        _ => Err(PageError::Malformed(
            "neither a result nor an error".to_owned(),
        )),
    }
}

/// A member's tool under its namespaced name; every other member is kept byte for byte.
pub(crate) fn rename(member: &str, tool: &RawValue) -> Result<Box<RawValue>, PageError> {
    let mut members: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(tool.get()).map_err(|e| PageError::Malformed(e.to_string()))?;
    let name: String = members
        .get("name")
        .ok_or_else(|| PageError::Malformed("a tool without a name".to_owned()))
        .and_then(|n| {
            serde_json::from_str(n.get()).map_err(|e| PageError::Malformed(e.to_string()))
        })?;
    let renamed =
        serde_json::value::to_raw_value(&namespaced(member, &name)).expect("a string serialises");
    members.insert("name".to_owned(), renamed);
    Ok(serde_json::value::to_raw_value(&members).expect("raw values serialise"))
}

/// The merged `tools/list` result. In 2026-07-28 it is a complete, private result (it was
/// filtered for one token) fresh for the shortest time any member allowed.
pub(crate) fn merged_result(
    tools: Vec<Box<RawValue>>,
    stateless: bool,
    ttl_ms: Option<u64>,
) -> Value {
    let tools = serde_json::value::to_raw_value(&tools).expect("raw values serialise");
    let mut result = json!({ "tools": tools });
    if stateless {
        result["resultType"] = json!("complete");
        result["ttlMs"] = json!(ttl_ms.unwrap_or(0));
        result["cacheScope"] = json!("private");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fleet(members: &[&str]) -> Fleet {
        let config = crate::config::Config::from_yaml(&format!(
            "listen: 127.0.0.1:8080\npublic_url: https://gw.example.com\n\
             issuer: {{url: 'https://issuer.example.com'}}\nupstreams: [{}]\n",
            members
                .iter()
                .enumerate()
                .map(|(i, m)| format!("{{name: '{m}', url: 'http://127.0.0.1:{}/mcp'}}", 9000 + i))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .unwrap();
        Fleet {
            name: "office".into(),
            resource: "https://gw.example.com/mcp/office".into(),
            members: config.routes.upstreams,
        }
    }

    #[test]
    fn a_namespaced_name_routes_to_its_member_and_nothing_else_routes() {
        let fleet = fleet(&["mail", "mail.archive", "kube-prod"]);
        let (member, tool) = fleet.route("mail__send").unwrap();
        assert_eq!((member.name.as_str(), tool), ("mail", "send"));
        let (member, tool) = fleet.route("mail.archive__search__all").unwrap();
        assert_eq!(
            (member.name.as_str(), tool),
            ("mail.archive", "search__all")
        );
        for unknown in [
            "send",
            "mail__",
            "__send",
            "mail_send",
            "calendar__send",
            "mail.__send",
        ] {
            assert!(fleet.route(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn member_names_that_could_split_two_ways_are_refused() {
        assert!(valid_member_name("mail"));
        assert!(valid_member_name("mail_box"));
        assert!(!valid_member_name("mail__box"));
        assert!(!valid_member_name("mail_"));
    }

    proptest! {
        /// Collision freedom: distinct (member, tool) pairs never share a namespaced name, and
        /// every namespaced name routes back to the pair it was made from.
        #[test]
        fn namespacing_is_injective_and_routes_back(
            a in "[a-z0-9._-]{0,5}[a-z0-9.-]", b in "[a-z0-9._-]{0,5}[a-z0-9.-]",
            t in "[A-Za-z0-9_.-]{1,8}", u in "[A-Za-z0-9_.-]{1,8}",
        ) {
            prop_assume!(valid_member_name(&a) && valid_member_name(&b) && a != b);
            let fleet = fleet(&[&a, &b]);
            for (member, tool) in [(&a, &t), (&b, &u), (&a, &u), (&b, &t)] {
                let name = namespaced(member, tool);
                let (routed, back) = fleet.route(&name).unwrap();
                prop_assert_eq!(&routed.name, member);
                prop_assert_eq!(back, tool.as_str());
            }
            prop_assert_ne!(namespaced(&a, &t), namespaced(&b, &u));
        }
    }

    #[test]
    fn renaming_keeps_everything_else_byte_for_byte() {
        let tool = RawValue::from_string(
            r#"{"name":"send","inputSchema":{"type":"object","properties":{"n":{"type":"number","maximum":1.50e2}}},"description":"Send."}"#
                .to_owned(),
        )
        .unwrap();
        let renamed = rename("mail", &tool).unwrap();
        let value: Value = serde_json::from_str(renamed.get()).unwrap();
        assert_eq!(value["name"], "mail__send");
        assert!(renamed.get().contains(r#""maximum":1.50e2"#), "{renamed}");
    }

    #[test]
    fn pages_are_read_and_member_errors_are_not_taken_for_lists() {
        let page = parse_page(
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"nextCursor":"2","ttlMs":500}}"#,
        )
        .unwrap();
        assert_eq!(page.tools.len(), 1);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        assert_eq!(page.ttl_ms, Some(500));
        assert!(matches!(
            parse_page(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#),
            Err(PageError::Refused(_))
        ));
        assert!(matches!(
            parse_page(r#"{"jsonrpc":"2.0","id":1,"result":{"resources":[]}}"#),
            Err(PageError::Malformed(_))
        ));
    }

    #[test]
    fn initialize_keeps_a_session_revision_and_refuses_to_start_a_session_in_the_stateless_one() {
        let fleet = fleet(&["mail"]);
        assert_eq!(
            initialize_result(&fleet, Some("2025-06-18"))["protocolVersion"],
            "2025-06-18"
        );
        assert_eq!(
            initialize_result(&fleet, Some("2026-07-28"))["protocolVersion"],
            "2025-11-25"
        );
        assert_eq!(
            initialize_result(&fleet, Some("1999-01-01"))["protocolVersion"],
            "2025-11-25"
        );
    }
}
