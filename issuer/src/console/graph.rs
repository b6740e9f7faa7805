//! The authority graph: who gave which agent what (active grants, by user), the sub-agent
//! chains tokens were exchanged for under each grant, and which chains are acting now (a
//! gateway decided a call of theirs in the last [`ACTIVE_WINDOW`] seconds).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;

use crate::db::Database;
use crate::grants::{self, Grant, GrantFilter, GrantStatus};
use crate::{audit, clients, revocation};

/// A chain that had a call decided this recently is shown as acting now.
pub(crate) const ACTIVE_WINDOW: i64 = 5 * 60;
/// Most grants drawn; the admin API lists them all.
const MOST_GRANTS: i64 = 200;

/// One chain of agents under a grant.
pub(crate) struct Chain {
    /// From the grant's own agent to the one that acted.
    pub(crate) agents: Vec<String>,
    /// When a token was last exchanged for it.
    pub(crate) delegated_at: i64,
    /// When a gateway last decided a call of it, if within [`ACTIVE_WINDOW`].
    pub(crate) acting_at: Option<i64>,
}

/// A grant and what acts under it.
pub(crate) struct GrantNode {
    pub(crate) grant: Grant,
    /// The agent's display name.
    pub(crate) agent: String,
    pub(crate) chains: Vec<Chain>,
    pub(crate) revoked_branches: Vec<String>,
}

/// The graph: users in name order, each with their active grants.
pub(crate) type Graph = BTreeMap<String, Vec<GrantNode>>;

/// Gathers the graph as of `now`.
pub(crate) async fn gather(db: &Database, now: i64) -> Result<Graph, sqlx::Error> {
    let acting = acting_since(db, now - ACTIVE_WINDOW).await?;
    let mut graph = Graph::new();
    let mut names: HashMap<String, String> = HashMap::new();
    let filter = GrantFilter {
        status: Some(GrantStatus::Active),
        ..GrantFilter::default()
    };
    let active = grants::page(db, &filter, None, MOST_GRANTS, now).await?;
    let ids: HashSet<&str> = active.iter().map(|g| g.id.as_str()).collect();
    let mut delegations = audit::delegations_of_each(db, &ids).await?;
    for grant in active {
        let agent = match names.get(&grant.client_id) {
            Some(name) => name.clone(),
            None => {
                let name = clients::get(db, &grant.client_id)
                    .await?
                    .map_or_else(|| grant.client_id.clone(), |c| c.name);
                names.insert(grant.client_id.clone(), name.clone());
                name
            }
        };
        let mut chains: Vec<Chain> = delegations
            .remove(&grant.id)
            .unwrap_or_default()
            .into_iter()
            .map(|(agents, delegated_at)| Chain {
                acting_at: acting.get(&(grant.id.clone(), agents.clone())).copied(),
                agents,
                delegated_at,
            })
            .collect();
        chains.sort_by(|a, b| a.agents.cmp(&b.agents));
        let revoked_branches = revocation::revoked_branches(db, &grant.id).await?;
        graph
            .entry(grant.subject.clone())
            .or_default()
            .push(GrantNode {
                grant,
                agent,
                chains,
                revoked_branches,
            });
    }
    Ok(graph)
}

/// The last decision time of each (grant, chain) since `since`.
async fn acting_since(
    db: &Database,
    since: i64,
) -> Result<HashMap<(String, Vec<String>), i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, data FROM audit_events WHERE kind = 'gateway.decision' AND at >= $1
         ORDER BY seq DESC LIMIT 20000",
    )
    .bind(since)
    .fetch_all(db.pool())
    .await?;
    let mut acting = HashMap::new();
    for row in rows {
        let Ok(data) = serde_json::from_str::<Value>(row.try_get("data")?) else {
            continue;
        };
        let Some(gid) = data["gid"].as_str() else {
            continue;
        };
        let chain = audit::chain_of(&data["act"]);
        acting
            .entry((gid.to_owned(), chain))
            .or_insert(row.try_get::<i64, _>("at")?);
    }
    Ok(acting)
}
