//! The console's live stream: the audit chain read as it grows, each event put in the words of
//! one line (who, which agents, where, what, the outcome) and handed to every open console.
//!
//! One task per issuer reads the new rows of `audit_events` by sequence number: every
//! [`POLL_INTERVAL`], and at once when this process appends (gateways' decisions, revocations,
//! freezes: [`DecisionFeed::poke`]). Reading the table rather than the requests this process
//! served means a console on any replica sees what every gateway shipped to any replica, and
//! what the CLI did. The task reads only while someone watches.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::Stream;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::{Notify, broadcast};

use crate::audit::chain_of;
use crate::db::Database;
use crate::page::when_precise;

/// How long a change can wait before a console sees it, with no local poke.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Rows read at once; a busier second is read in several passes.
const READ_BATCH: i64 = 5000;
/// How many past lines a console that connects (or reconnects) is sent.
pub(crate) const BACKLOG: i64 = 200;

/// One audit event as a console line. Every field is plain text: the page's script puts it in
/// with `textContent`, never as markup.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Line {
    /// The audit sequence number (the SSE `id`).
    pub(crate) seq: i64,
    /// Unix seconds.
    pub(crate) at: i64,
    /// `at`, for people.
    pub(crate) time: String,
    /// `allow`, `deny`, `revoked`, `frozen`, `lifted`, `approval`, `delegated` or `change`.
    pub(crate) outcome: &'static str,
    /// The user, when there is one.
    pub(crate) user: String,
    /// The agents acting, from the grant's own to the one that acted.
    pub(crate) agents: Vec<String>,
    /// The upstream, for gateway decisions.
    pub(crate) upstream: String,
    /// The tool or method, or what was revoked or frozen.
    pub(crate) what: String,
    /// The rule that decided, or the reason given.
    pub(crate) detail: String,
    /// The gateway that decided.
    pub(crate) gateway: String,
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

impl Line {
    fn of(seq: i64, at: i64, kind: &str, data: &Value) -> Self {
        let mut line = Line {
            seq,
            at,
            time: when_precise(at),
            outcome: "change",
            user: text(&data["sub"]),
            agents: Vec::new(),
            upstream: String::new(),
            what: kind.to_owned(),
            detail: String::new(),
            gateway: String::new(),
        };
        match kind {
            "gateway.decision" => {
                line.outcome = if data["decision"] == "allow" {
                    "allow"
                } else {
                    "deny"
                };
                line.agents = chain_of(&data["act"]);
                line.upstream = text(&data["upstream"]);
                line.what = match data["target"].as_str().filter(|t| !t.is_empty()) {
                    Some(target) => target.to_owned(),
                    None => text(&data["method"]),
                };
                line.detail = text(&data["rule"]);
                line.gateway = text(&data["gateway"]);
            }
            "revocation" => {
                line.outcome = "revoked";
                line.what = format!("{} {}", text(&data["kind"]), text(&data["value"]));
                line.detail = text(&data["reason"]);
            }
            "freeze.set" | "freeze.lifted" => {
                line.outcome = if kind == "freeze.set" {
                    "frozen"
                } else {
                    "lifted"
                };
                line.user = text(&data["by"]);
                line.what = text(&data["pattern"]);
                line.detail = text(&data["reason"]);
            }
            "token.exchanged" => {
                line.outcome = "delegated";
                line.agents = chain_of(&data["act"]);
                line.what = text(&data["grant_id"]);
            }
            _ if kind.starts_with("approval.") => {
                line.outcome = "approval";
                line.user = text(&data["user"]);
                line.what = format!("{kind} {}", text(&data["tool"]));
            }
            _ => {}
        }
        line
    }
}

/// A line as it is handed to consoles: serialised once, however many watch.
#[derive(Debug)]
pub(crate) struct Shared {
    line: Line,
    json: String,
}

impl Shared {
    fn new(line: Line) -> Arc<Self> {
        let json = serde_json::to_string(&line).expect("lines serialise");
        Arc::new(Self { line, json })
    }
}

/// What a console asked to see; empty fields match everything.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(crate) struct Filter {
    #[serde(default)]
    pub(crate) user: String,
    #[serde(default)]
    pub(crate) agent: String,
    #[serde(default)]
    pub(crate) upstream: String,
    #[serde(default)]
    pub(crate) outcome: String,
}

impl Filter {
    pub(crate) fn matches(&self, line: &Line) -> bool {
        (self.user.is_empty() || line.user == self.user)
            && (self.agent.is_empty() || line.agents.contains(&self.agent))
            && (self.upstream.is_empty() || line.upstream == self.upstream)
            && (self.outcome.is_empty() || line.outcome == self.outcome)
    }
}

/// Reads the audit chain from `after` on, at most `limit` rows, as lines.
pub(crate) async fn read(db: &Database, after: i64, limit: i64) -> Result<Vec<Line>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, kind, data FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for row in rows {
        let data: String = row.try_get("data")?;
        let data = serde_json::from_str(&data).unwrap_or(Value::Null);
        lines.push(Line::of(
            row.try_get("seq")?,
            row.try_get("at")?,
            row.try_get::<String, _>("kind")?.as_str(),
            &data,
        ));
    }
    Ok(lines)
}

/// The last `count` lines matching `filter`, newest first, for a page's first view.
pub(crate) async fn recent(
    db: &Database,
    filter: &Filter,
    count: usize,
) -> Result<(Vec<Line>, i64), sqlx::Error> {
    let head = head(db).await?;
    let lines = read(db, (head - BACKLOG * 25).max(0), BACKLOG * 25).await?;
    let mut matching: Vec<Line> = lines.into_iter().filter(|l| filter.matches(l)).collect();
    matching.reverse();
    matching.truncate(count);
    Ok((matching, head))
}

async fn head(db: &Database) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
        .fetch_one(db.pool())
        .await
}

/// Hands new audit lines to every open console.
#[derive(Debug)]
pub struct DecisionFeed {
    db: Database,
    sender: broadcast::Sender<Arc<Shared>>,
    poked: Notify,
    /// The last sequence number published, while anyone watches. A console that subscribes
    /// when nobody watched sets it to the head it read its backlog up to, so that no line
    /// falls between its backlog and the live lines.
    read_through: tokio::sync::Mutex<Option<i64>>,
}

impl DecisionFeed {
    /// Starts the reading task (it stops when the feed is dropped).
    pub fn start(db: Database) -> Arc<Self> {
        let (sender, _) = broadcast::channel(8192);
        let feed = Arc::new(Self {
            db,
            sender,
            poked: Notify::new(),
            read_through: tokio::sync::Mutex::new(None),
        });
        let weak = Arc::downgrade(&feed);
        tokio::spawn(async move {
            loop {
                let Some(feed) = weak.upgrade() else { return };
                {
                    let mut through = feed.read_through.lock().await;
                    if feed.sender.receiver_count() == 0 {
                        // Nobody watches: the next console says where to start.
                        *through = None;
                    } else if let Some(at) = *through {
                        *through = Some(feed.publish(at).await);
                    }
                }
                tokio::select! {
                    () = feed.poked.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            }
        });
        feed
    }

    /// Says the chain has grown here: consoles see it now rather than at the next poll.
    pub fn poke(&self) {
        self.poked.notify_one();
    }

    /// Publishes every line after `through`; returns the last one published.
    async fn publish(&self, mut through: i64) -> i64 {
        loop {
            match read(&self.db, through, READ_BATCH).await {
                Ok(lines) => {
                    let full = lines.len() as i64 == READ_BATCH;
                    for line in lines {
                        through = line.seq;
                        let _receivers = self.sender.send(Shared::new(line));
                    }
                    if !full {
                        return through;
                    }
                }
                Err(e) => {
                    tracing::warn!("console feed: {e}");
                    return through;
                }
            }
        }
    }
}

struct StreamState {
    db: Database,
    filter: Filter,
    receiver: broadcast::Receiver<Arc<Shared>>,
    backlog: VecDeque<Arc<Shared>>,
    last_sent: i64,
}

/// The SSE events of `GET /console/events`: the lines matching `filter` after `after` (at most
/// [`BACKLOG`] rows back), then live ones, each once and in order.
pub(crate) async fn stream(
    feed: &Arc<DecisionFeed>,
    filter: Filter,
    after: i64,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>, sqlx::Error> {
    // Subscribe before reading the backlog, so nothing appended in between is missed; the
    // feed publishes from the head at latest, which the backlog reaches.
    let (receiver, head) = {
        let mut through = feed.read_through.lock().await;
        let receiver = feed.sender.subscribe();
        let head = head(&feed.db).await?;
        through.get_or_insert(head);
        (receiver, head)
    };
    feed.poke();
    let after = after.max(head - BACKLOG);
    let backlog = read(&feed.db, after, BACKLOG)
        .await?
        .into_iter()
        .map(Shared::new)
        .collect();
    let state = StreamState {
        db: feed.db.clone(),
        filter,
        receiver,
        backlog,
        last_sent: after,
    };
    Ok(futures_util::stream::unfold(
        state,
        |mut state| async move {
            loop {
                let shared = match state.backlog.pop_front() {
                    Some(shared) => shared,
                    None => match state.receiver.recv().await {
                        Ok(shared) => shared,
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            // Too slow for the live channel: catch up from the table.
                            match read(&state.db, state.last_sent, BACKLOG * 5).await {
                                Ok(missed) => {
                                    state.backlog = missed.into_iter().map(Shared::new).collect()
                                }
                                Err(e) => {
                                    tracing::warn!("console stream resync failed: {e}");
                                    return None;
                                }
                            }
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                };
                let Shared { line, json } = &*shared;
                if line.seq <= state.last_sent {
                    continue;
                }
                state.last_sent = line.seq;
                if !state.filter.matches(line) {
                    continue;
                }
                let event = Event::default()
                    .id(line.seq.to_string())
                    .event("line")
                    .data(json);
                return Some((Ok(event), state));
            }
        },
    ))
}
