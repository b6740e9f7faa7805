//! Revocation at the issuer: durable first, then pushed to every gateway.
//!
//! [`revoke`] commits the revocation (with its side effects: a revoked grant, a disabled agent,
//! every grant of a revoked user) and its audit event in one transaction before anyone is told.
//! Then [`RevocationHub::poke`] publishes every committed entry past the last one published, in
//! sequence order, to the live streams. The hub is poked after each local revocation, by
//! PostgreSQL `NOTIFY` when another replica revokes, and once a second in any case, which also
//! picks up revocations made by the CLI in another process.
//!
//! Gateways follow `GET /revocations/stream` (SSE, one event per entry, `id` = sequence number,
//! resumable with `Last-Event-ID`) and can fall back to the signed feed at
//! `GET /.well-known/revoked`. The stream also carries the change freezes in force
//! ([`crate::freezes`]), whole, as a `freezes` event without an id: first on connecting, and
//! again whenever the hub sees the set change.
//!
//! One file because durability, publication and the stream are one ordering argument (commit,
//! then publish in sequence order, resumable by sequence number) that reads best in one place.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use futures_util::Stream;
use portcullis_policy::freeze::FreezePattern;
use portcullis_policy::revocation::{
    RevocationEntry, RevocationFeed, RevocationKind, RevokedSet, sign_feed, target_hash,
};
use portcullis_policy::{Claims, VerifyError};
use serde_json::json;
use sqlx::Row;
use tokio::sync::{broadcast, watch};

use crate::approvals::{self, Voided};
use crate::db::{Backend, Database};
use crate::keys::Keyring;
use crate::{audit, freezes, grants, settings, upstream_links};

const NOTIFY_CHANNEL: &str = "portcullis_revocations";
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long a session revocation is kept: gateways end the session at once; the entry only
/// guards against a session id replayed later.
const SESSION_REVOCATION_TTL: i64 = 24 * 3600;

/// What an operator or a client asks to revoke.
#[derive(Debug, Clone)]
pub struct RevokeRequest {
    /// What kind of target.
    pub kind: RevocationKind,
    /// The jti, grant id, client id, user or session id.
    pub value: String,
    /// Why, for the audit log.
    pub reason: String,
    /// For a token: its `exp`, when known.
    pub token_expires_at: Option<i64>,
}

impl RevokeRequest {
    /// An operator's revocation of one token, named by its JWT or its `jti`. A JWT must be one
    /// of this issuer's (expired or not); its `jti` and `exp` are taken from it, so the entry
    /// is kept exactly as long as the token could be used. A bare `jti` is kept for the longest
    /// token lifetime in force.
    pub fn token(
        keys: &Keyring,
        token: &str,
        reason: String,
        now: i64,
    ) -> Result<Self, VerifyError> {
        let (value, token_expires_at) = if token.contains('.') {
            let claims = keys
                .dangerous_verify_even_if_expired(token, now)?
                .into_claims();
            (claims.token_id, Some(claims.expires_at))
        } else {
            (token.to_owned(), None)
        };
        Ok(Self {
            kind: RevocationKind::Token,
            value,
            reason,
            token_expires_at,
        })
    }
}

/// Why a revocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    /// No grant with this id.
    #[error("no grant {0:?}")]
    UnknownGrant(String),
    /// No client with this id.
    #[error("no agent (client) {0:?}")]
    UnknownClient(String),
    /// Empty or oversized value.
    #[error("the value to revoke must be 1 to 512 characters")]
    InvalidValue,
    /// A branch not named `GRANT_ID/AGENT`, or naming the grant's own agent.
    #[error(
        "a branch is GRANT_ID/AGENT, with a sub-agent (the grant's own agent is the whole grant: revoke the grant)"
    )]
    InvalidBranch,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Commits a revocation durably and publishes it. An agent's or user's revocation is kept
/// until every token it covers has expired: for the longest token lifetime in force, which is
/// `max_token_lifetime` (the caller's own) or a longer one another issuer on `db` recorded.
pub async fn revoke(
    db: &Database,
    hub: &RevocationHub,
    request: RevokeRequest,
    max_token_lifetime: i64,
    now: i64,
) -> Result<RevocationEntry, RevokeError> {
    let value = request.value.trim().to_owned();
    if value.is_empty() || value.len() > 512 {
        return Err(RevokeError::InvalidValue);
    }
    let covers_issued = now + settings::longest_token_lifetime(db, max_token_lifetime).await?;
    // A revoked grant takes its person's upstream accounts at its resources with it.
    let mut unlinked: Option<(String, Vec<String>)> = None;
    let (expires_at, issued_before) = match request.kind {
        RevocationKind::Token => (request.token_expires_at.unwrap_or(covers_issued), None),
        RevocationKind::Grant => {
            let grant = grants::get(db, &value)
                .await?
                .ok_or_else(|| RevokeError::UnknownGrant(value.clone()))?;
            unlinked = Some((grant.subject.clone(), grant.resources.clone()));
            // Tokens of the grant never outlive it; a later exchange is refused by revoked_at.
            (grant.expires_at.min(covers_issued).max(now + 1), None)
        }
        RevocationKind::Agent => {
            if crate::clients::get(db, &value).await?.is_none() {
                return Err(RevokeError::UnknownClient(value));
            }
            (covers_issued, Some(now))
        }
        RevocationKind::User => (covers_issued, Some(now)),
        RevocationKind::Session => (now + SESSION_REVOCATION_TTL, None),
        RevocationKind::Branch => {
            // `gid/agent`: grant ids hold no '/'.
            let (gid, agent) = value.split_once('/').ok_or(RevokeError::InvalidBranch)?;
            let grant = grants::get(db, gid)
                .await?
                .ok_or_else(|| RevokeError::UnknownGrant(gid.to_owned()))?;
            if agent.is_empty() || agent == grant.client_id {
                return Err(RevokeError::InvalidBranch);
            }
            // Every token of the branch, issued before or after: the grant's own lifetime.
            (grant.expires_at.min(covers_issued).max(now + 1), None)
        }
    };
    let kind = request.kind;
    let target = target_hash(kind, &value);
    let reason = request.reason;
    let entry = db
        .write(|tx| {
            // Each attempt owns its copies: the future may only borrow the transaction.
            let (value, target, reason) = (value.clone(), target.clone(), reason.clone());
            let unlinked = unlinked.clone();
            Box::pin(async move {
            match kind {
                RevocationKind::Grant => {
                    sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(now)
                        .bind(&value)
                        .execute(&mut **tx)
                        .await?;
                    approvals::void(tx, Voided::Grant(&value), now).await?;
                    if let Some((user, resources)) = &unlinked {
                        for resource in resources {
                            upstream_links::drop_links(tx, user, Some(resource)).await?;
                        }
                    }
                }
                RevocationKind::User => {
                    sqlx::query(
                        "UPDATE grants SET revoked_at = $1 WHERE subject = $2 AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(&value)
                    .execute(&mut **tx)
                    .await?;
                    approvals::void(tx, Voided::User(&value), now).await?;
                    upstream_links::drop_links(tx, &value, None).await?;
                }
                RevocationKind::Agent => {
                    sqlx::query(
                        "UPDATE clients SET disabled_at = $1 WHERE client_id = $2 AND disabled_at IS NULL",
                    )
                    .bind(now)
                    .bind(&value)
                    .execute(&mut **tx)
                    .await?;
                }
                RevocationKind::Token | RevocationKind::Session | RevocationKind::Branch => {}
            }
            let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM revocations")
                .fetch_one(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT INTO revocations
                   (seq, kind, value, target, revoked_at, issued_before, expires_at, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(seq)
            .bind(kind.as_str())
            .bind(&value)
            .bind(&target)
            .bind(now)
            .bind(issued_before)
            .bind(expires_at)
            .bind(&reason)
            .execute(&mut **tx)
            .await?;
            audit::append(
                tx,
                "revocation",
                json!({"seq": seq, "kind": kind.as_str(), "value": value, "reason": reason}),
                now,
            )
            .await?;
            Ok(RevocationEntry {
                seq,
                kind,
                target: target.clone(),
                revoked_at: now,
                issued_before,
                expires_at,
            })
        })
        })
        .await?;
    if db.backend() == Backend::Postgres {
        // Other replicas' hubs wake on this; if it is lost, their one-second poll catches up.
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(NOTIFY_CHANNEL)
            .bind(entry.seq.to_string())
            .execute(db.pool())
            .await
        {
            tracing::warn!("NOTIFY after revocation {} failed: {e}", entry.seq);
        }
    }
    crate::metrics::revocation(kind);
    hub.poke().await;
    Ok(entry)
}

/// The agents whose branch of grant `gid` is revoked.
pub async fn revoked_branches(db: &Database, gid: &str) -> Result<Vec<String>, sqlx::Error> {
    let prefix = format!("{gid}/");
    let values: Vec<String> =
        sqlx::query_scalar("SELECT value FROM revocations WHERE kind = 'branch' AND value LIKE $1")
            .bind(format!("{prefix}%"))
            .fetch_all(db.pool())
            .await?;
    Ok(values
        .into_iter()
        .filter_map(|v| v.strip_prefix(&prefix).map(str::to_owned))
        .collect())
}

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<RevocationEntry, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(RevocationEntry {
        seq: row.try_get("seq")?,
        kind: RevocationKind::from_name(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "kind".into(),
            source: format!("unknown revocation kind {kind:?}").into(),
        })?,
        target: row.try_get("target")?,
        revoked_at: row.try_get("revoked_at")?,
        issued_before: row.try_get("issued_before")?,
        expires_at: row.try_get("expires_at")?,
    })
}

/// Unexpired entries after `after`, in sequence order.
pub async fn since(
    db: &Database,
    after: i64,
    now: i64,
) -> Result<Vec<RevocationEntry>, sqlx::Error> {
    sqlx::query(
        "SELECT seq, kind, target, revoked_at, issued_before, expires_at FROM revocations
         WHERE seq > $1 AND expires_at > $2 ORDER BY seq",
    )
    .bind(after)
    .bind(now)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(entry_from_row)
    .collect()
}

/// A revocation as an operator reads it: the entry gateways get, with what was named and why.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Revocation {
    /// Position in the revocation log.
    pub seq: i64,
    /// `token`, `grant`, `agent`, `user`, `session` or `branch`.
    #[schema(value_type = String)]
    pub kind: RevocationKind,
    /// The jti, grant id, client id, user, session id or `GRANT/AGENT` revoked.
    pub value: String,
    /// Why.
    pub reason: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// Agent and user revocations cover tokens issued at or before this time.
    pub issued_before: Option<i64>,
    /// When no token it covers can still be valid.
    pub expires_at: i64,
}

/// Up to `limit` revocations after `after`, oldest first, expired ones included until pruned.
pub async fn list(db: &Database, after: i64, limit: i64) -> Result<Vec<Revocation>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, kind, value, reason, revoked_at, issued_before, expires_at FROM revocations
         WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut list = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("kind")?;
        list.push(Revocation {
            seq: row.try_get("seq")?,
            kind: RevocationKind::from_name(&kind).ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "kind".into(),
                source: format!("unknown revocation kind {kind:?}").into(),
            })?,
            value: row.try_get("value")?,
            reason: row.try_get("reason")?,
            revoked_at: row.try_get("revoked_at")?,
            issued_before: row.try_get("issued_before")?,
            expires_at: row.try_get("expires_at")?,
        });
    }
    Ok(list)
}

/// The entry revoking a token with these claims, if any.
pub async fn covering(
    db: &Database,
    claims: &Claims,
    now: i64,
) -> Result<Option<RevocationEntry>, sqlx::Error> {
    Ok(revoked_set(db, &[claims], now)
        .await?
        .covering(claims)
        .cloned())
}

/// The unexpired revocations that could cover any of `tokens`, in one indexed query.
pub async fn revoked_set(
    db: &Database,
    tokens: &[&Claims],
    now: i64,
) -> Result<RevokedSet, sqlx::Error> {
    let mut targets = Vec::new();
    for claims in tokens {
        targets.push(target_hash(RevocationKind::Token, &claims.token_id));
        targets.push(target_hash(RevocationKind::User, &claims.subject));
        targets.push(target_hash(RevocationKind::Agent, &claims.client_id));
        if let Some(gid) = &claims.grant_id {
            targets.push(target_hash(RevocationKind::Grant, gid));
        }
        for actor in claims.actors.iter().flat_map(|chain| chain.actors()) {
            targets.push(target_hash(RevocationKind::Agent, &actor.sub));
        }
    }
    targets.sort_unstable();
    targets.dedup();
    // Only numbered placeholders are spliced in; every value is bound.
    let placeholders: Vec<String> = (0..targets.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT seq, kind, target, revoked_at, issued_before, expires_at FROM revocations
         WHERE expires_at > $1 AND target IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for target in &targets {
        query = query.bind(target);
    }
    let mut set = RevokedSet::new();
    for row in &query.fetch_all(db.pool()).await? {
        set.insert(entry_from_row(row)?);
    }
    Ok(set)
}

/// The signed feed of every unexpired entry.
pub async fn feed(
    db: &Database,
    keyring: &Keyring,
    issuer: &str,
    now: i64,
) -> Result<String, sqlx::Error> {
    let version: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM revocations")
        .fetch_one(db.pool())
        .await?;
    let entries = since(db, 0, now).await?;
    let feed = RevocationFeed {
        iss: issuer.to_owned(),
        iat: now,
        version,
        entries,
    };
    Ok(sign_feed(&feed, keyring.active()))
}

/// Publishes committed revocations to live streams, in order, exactly once each.
#[derive(Debug)]
pub struct RevocationHub {
    db: Database,
    sender: broadcast::Sender<RevocationEntry>,
    published: tokio::sync::Mutex<i64>,
    freezes: watch::Sender<Arc<Vec<FreezePattern>>>,
}

impl RevocationHub {
    /// A hub that publishes entries committed after now. Spawns its poller, and for
    /// PostgreSQL a `LISTEN` task on `database_url`.
    pub async fn start(
        db: Database,
        database_url: Option<String>,
    ) -> Result<Arc<Self>, sqlx::Error> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM revocations")
            .fetch_one(db.pool())
            .await?;
        let (sender, _) = broadcast::channel(1024);
        let freezes = freezes::list(&db).await?;
        let hub = Arc::new(Self {
            db: db.clone(),
            sender,
            published: tokio::sync::Mutex::new(head),
            freezes: watch::Sender::new(Arc::new(freezes.into_iter().map(|f| f.pattern).collect())),
        });
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                let Some(hub) = weak.upgrade() else { return };
                hub.poke().await;
            }
        });
        if let (Backend::Postgres, Some(url)) = (db.backend(), database_url) {
            let weak = Arc::downgrade(&hub);
            tokio::spawn(async move { listen(url, weak).await });
        }
        Ok(hub)
    }

    /// A receiver of entries published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RevocationEntry> {
        self.sender.subscribe()
    }

    /// The freezes in force, as last read, and each change from now on.
    pub fn freezes(&self) -> watch::Receiver<Arc<Vec<FreezePattern>>> {
        self.freezes.subscribe()
    }

    /// Publishes every committed entry after the last one published, and the freezes in
    /// force if they changed.
    pub async fn poke(&self) {
        match freezes::list(&self.db).await {
            Ok(now) => {
                let now: Vec<FreezePattern> = now.into_iter().map(|f| f.pattern).collect();
                self.freezes.send_if_modified(|known| {
                    let changed = **known != now;
                    if changed {
                        *known = Arc::new(now);
                    }
                    changed
                });
            }
            Err(e) => tracing::warn!("reading the freezes failed: {e}"),
        }
        let mut published = self.published.lock().await;
        let rows = sqlx::query(
            "SELECT seq, kind, target, revoked_at, issued_before, expires_at FROM revocations
             WHERE seq > $1 ORDER BY seq",
        )
        .bind(*published)
        .fetch_all(self.db.pool())
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("reading new revocations failed: {e}");
                return;
            }
        };
        for row in &rows {
            match entry_from_row(row) {
                Ok(entry) => {
                    *published = entry.seq;
                    // No subscriber is fine: nobody is streaming right now.
                    let _receivers = self.sender.send(entry);
                }
                Err(e) => {
                    tracing::error!("unreadable revocation row: {e}");
                    return;
                }
            }
        }
    }
}

async fn listen(url: String, hub: std::sync::Weak<RevocationHub>) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Ok(()) => loop {
                    match listener.recv().await {
                        Ok(_) => match hub.upgrade() {
                            Some(hub) => hub.poke().await,
                            None => return,
                        },
                        Err(e) => {
                            tracing::warn!("LISTEN {NOTIFY_CHANNEL} interrupted: {e}");
                            break;
                        }
                    }
                },
                Err(e) => tracing::warn!("LISTEN {NOTIFY_CHANNEL} failed: {e}"),
            },
            Err(e) => tracing::warn!("connecting for LISTEN failed: {e}"),
        }
        if hub.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

struct StreamState {
    db: Database,
    receiver: broadcast::Receiver<RevocationEntry>,
    freezes: watch::Receiver<Arc<Vec<FreezePattern>>>,
    /// Whether the freezes in force have been sent (first of all, then on each change).
    freezes_sent: bool,
    backlog: VecDeque<RevocationEntry>,
    last_sent: i64,
}

/// The SSE events of `GET /revocations/stream`: every unexpired entry after `after` from the
/// database, then live ones, each exactly once and in order.
pub async fn stream(
    db: Database,
    hub: &RevocationHub,
    after: i64,
    now: i64,
) -> Result<impl Stream<Item = Result<Event, Infallible>> + use<>, sqlx::Error> {
    // Subscribe before reading the backlog, so nothing committed in between is missed; an entry
    // seen in both is sent once, by sequence number.
    let receiver = hub.subscribe();
    let freezes = hub.freezes();
    let backlog = since(&db, after, now).await?.into();
    let state = StreamState {
        db,
        receiver,
        freezes,
        freezes_sent: false,
        backlog,
        last_sent: after,
    };
    Ok(futures_util::stream::unfold(
        state,
        |mut state| async move {
            loop {
                if !state.freezes_sent {
                    state.freezes_sent = true;
                    let set = state.freezes.borrow_and_update().clone();
                    return Some((Ok(freezes_event(&set)), state));
                }
                let entry = match state.backlog.pop_front() {
                    Some(entry) => entry,
                    None => match next_live(&mut state).await {
                        Live::Freezes => {
                            state.freezes_sent = false;
                            continue;
                        }
                        Live::Entry(Ok(entry)) => entry,
                        Live::Entry(Err(broadcast::error::RecvError::Lagged(_))) => {
                            // Too slow for the live channel: catch up from the database.
                            match since(&state.db, state.last_sent, crate::now()).await {
                                Ok(missed) => state.backlog = missed.into(),
                                Err(e) => {
                                    tracing::warn!("revocation stream resync failed: {e}");
                                    return None;
                                }
                            }
                            continue;
                        }
                        Live::Entry(Err(broadcast::error::RecvError::Closed)) => return None,
                    },
                };
                if entry.seq <= state.last_sent {
                    continue;
                }
                state.last_sent = entry.seq;
                let event = Event::default()
                    .id(entry.seq.to_string())
                    .event("revocation")
                    .json_data(&entry)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable entry"));
                return Some((Ok(event), state));
            }
        },
    ))
}

/// What a live stream waits for next.
enum Live {
    Entry(Result<RevocationEntry, broadcast::error::RecvError>),
    /// The freezes in force changed.
    Freezes,
}

async fn next_live(state: &mut StreamState) -> Live {
    tokio::select! {
        entry = state.receiver.recv() => Live::Entry(entry),
        // A closed hub ends the stream through the revocation channel, so this waits on.
        Ok(()) = state.freezes.changed() => Live::Freezes,
    }
}

fn freezes_event(set: &[FreezePattern]) -> Event {
    Event::default()
        .event("freezes")
        .json_data(json!({ "freezes": set }))
        .unwrap_or_else(|_| Event::default().comment("unserialisable freezes"))
}
