//! Grants: a user's bounded authority given to one agent.
//!
//! A grant names the user, the agent (client), the resources it may be used at, its
//! constraints and its expiry. Its id travels in every token delegated from it (`gid`), so
//! revoking the grant reaches the whole chain. The user's own token for a grant (the
//! `subject_token` of the first exchange) is minted here; a token from a trusted external
//! identity provider can take that role ([`crate::external_idp`]).

use portcullis_policy::{Claims, Constraints};
use serde::Serialize;
use sqlx::Row;

use crate::clients;
use crate::db::Database;
use crate::secret::random_token;

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Grant {
    /// The grant id (`gid`).
    pub id: String,
    /// The operator's name for it, when it comes from a grants file.
    pub name: Option<String>,
    /// The user.
    pub subject: String,
    /// The agent it was given to.
    pub client_id: String,
    /// Resource identifiers (RFC 8707) tokens from this grant may be used at.
    pub resources: Vec<String>,
    /// What it allows.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: Constraints,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
}

impl Grant {
    /// Whether tokens may still be exchanged from this grant at `now`.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// What an operator asks for when creating a grant.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The operator's name for it (grants files); unique among grants in force.
    #[serde(default)]
    pub name: Option<String>,
    /// The user.
    pub subject: String,
    /// The agent.
    pub client_id: String,
    /// Resource identifiers.
    pub resources: Vec<String>,
    /// Constraints, as RFC 9396 `authorization_details`.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: Constraints,
    /// Lifetime in seconds.
    pub expires_in: i64,
}

/// Why a grant could not be created.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// No such client.
    #[error("unknown client {0:?}")]
    UnknownClient(String),
    /// A field is unusable.
    #[error("invalid grant: {0}")]
    Invalid(&'static str),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

pub(crate) fn valid_resource(resource: &str) -> bool {
    (resource.starts_with("https://") || resource.starts_with("http://"))
        && !resource.contains('#')
        && !resource.chars().any(char::is_whitespace)
}

/// Stores a new grant.
pub async fn create(db: &Database, request: GrantRequest, now: i64) -> Result<Grant, GrantError> {
    if request.subject.is_empty() {
        return Err(GrantError::Invalid("subject is empty"));
    }
    if request.resources.is_empty() || !request.resources.iter().all(|r| valid_resource(r)) {
        return Err(GrantError::Invalid(
            "resources must be absolute http(s) URIs without a fragment",
        ));
    }
    if request.expires_in <= 0 {
        return Err(GrantError::Invalid("expires_in must be positive"));
    }
    if clients::get(db, &request.client_id).await?.is_none() {
        return Err(GrantError::UnknownClient(request.client_id));
    }
    let grant = Grant {
        id: format!("gr_{}", random_token(16)),
        name: request.name,
        subject: request.subject,
        client_id: request.client_id,
        resources: request.resources,
        authorization_details: request.authorization_details,
        created_at: now,
        expires_at: now.saturating_add(request.expires_in),
        revoked_at: None,
    };
    let event = serde_json::json!({
        "grant_id": grant.id, "name": grant.name, "subject": grant.subject, "client_id": grant.client_id,
        "resources": grant.resources, "authorization_details": grant.authorization_details,
        "expires_at": grant.expires_at,
    });
    let row = grant.clone();
    db.write(|tx| {
        let (grant, event) = (row.clone(), event.clone());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO grants
                   (id, subject, client_id, resources, authorization_details, created_at, expires_at,
                    name)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&grant.id)
            .bind(&grant.subject)
            .bind(&grant.client_id)
            .bind(serde_json::to_string(&grant.resources).expect("strings serialise"))
            .bind(serde_json::to_string(&grant.authorization_details).expect("constraints serialise"))
            .bind(grant.created_at)
            .bind(grant.expires_at)
            .bind(&grant.name)
            .execute(&mut **tx)
            .await?;
            crate::audit::append(tx, "grant.created", event, now).await?;
            Ok(())
        })
    })
    .await?;
    Ok(grant)
}

/// The grant with this id.
pub async fn get(db: &Database, id: &str) -> Result<Option<Grant>, sqlx::Error> {
    sqlx::query(
        "SELECT id, subject, client_id, resources, authorization_details, created_at, expires_at,
                revoked_at, name
         FROM grants WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?
    .map(|row| grant_from_row(&row))
    .transpose()
}

/// The newest active grant `subject` gave `client_id` for `resource`.
pub async fn find_active(
    db: &Database,
    subject: &str,
    client_id: &str,
    resource: &str,
    now: i64,
) -> Result<Option<Grant>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, subject, client_id, resources, authorization_details, created_at, expires_at,
                revoked_at, name
         FROM grants
         WHERE subject = $1 AND client_id = $2 AND revoked_at IS NULL AND expires_at > $3
         ORDER BY created_at DESC, id",
    )
    .bind(subject)
    .bind(client_id)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    for row in &rows {
        let grant = grant_from_row(row)?;
        if grant.resources.iter().any(|r| r == resource) {
            return Ok(Some(grant));
        }
    }
    Ok(None)
}

/// The grants `subject` gave, newest first.
pub async fn of_subject(db: &Database, subject: &str) -> Result<Vec<Grant>, sqlx::Error> {
    sqlx::query(
        "SELECT id, subject, client_id, resources, authorization_details, created_at, expires_at,
                revoked_at, name
         FROM grants WHERE subject = $1 ORDER BY created_at DESC, id",
    )
    .bind(subject)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(grant_from_row)
    .collect()
}

/// A grant's state as of now.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Neither revoked nor expired.
    Active,
    /// Revoked.
    Revoked,
    /// Past its expiry, not revoked.
    Expired,
}

impl GrantStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Which grants to list: all filters must hold.
#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    /// Given by this user.
    pub user: Option<String>,
    /// Given to this agent.
    pub agent: Option<String>,
    /// In this state.
    pub status: Option<GrantStatus>,
}

/// Up to `limit` grants matching `filter`, newest first, after `before` (the
/// `(created_at, id)` of the last grant of the previous page).
pub async fn page(
    db: &Database,
    filter: &GrantFilter,
    before: Option<(i64, String)>,
    limit: i64,
    now: i64,
) -> Result<Vec<Grant>, sqlx::Error> {
    let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
    sqlx::query(
        "SELECT id, subject, client_id, resources, authorization_details, created_at, expires_at,
                revoked_at, name
         FROM grants
         WHERE ($1 = '' OR subject = $1) AND ($2 = '' OR client_id = $2)
           AND ($3 = '' OR ($3 = 'active' AND revoked_at IS NULL AND expires_at > $4)
                OR ($3 = 'revoked' AND revoked_at IS NOT NULL)
                OR ($3 = 'expired' AND revoked_at IS NULL AND expires_at <= $4))
           AND (created_at < $5 OR (created_at = $5 AND ($6 = '' OR id < $6)))
         ORDER BY created_at DESC, id DESC LIMIT $7",
    )
    .bind(filter.user.clone().unwrap_or_default())
    .bind(filter.agent.clone().unwrap_or_default())
    .bind(filter.status.map_or("", GrantStatus::as_str))
    .bind(now)
    .bind(before_at)
    .bind(before_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(grant_from_row)
    .collect()
}

/// Every grant, newest first.
pub async fn list(db: &Database) -> Result<Vec<Grant>, sqlx::Error> {
    sqlx::query(
        "SELECT id, subject, client_id, resources, authorization_details, created_at, expires_at,
                revoked_at, name
         FROM grants ORDER BY created_at DESC, id",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(grant_from_row)
    .collect()
}

fn grant_from_row(row: &sqlx::any::AnyRow) -> Result<Grant, sqlx::Error> {
    let decode = |column: &str, e: serde_json::Error| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    };
    Ok(Grant {
        id: row.try_get("id")?,
        subject: row.try_get("subject")?,
        client_id: row.try_get("client_id")?,
        resources: serde_json::from_str(row.try_get("resources")?)
            .map_err(|e| decode("resources", e))?,
        authorization_details: serde_json::from_str(row.try_get("authorization_details")?)
            .map_err(|e| decode("authorization_details", e))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        name: row.try_get("name")?,
    })
}

/// The user's token for a grant: `sub` = the user, `aud` = this issuer (so no resource
/// accepts it), `gid` and the grant's constraints, no `act`. Its only use is as the
/// `subject_token` of a first exchange by the grant's agent.
pub fn subject_token_claims(grant: &Grant, issuer: &str, now: i64, ttl: i64) -> Claims {
    Claims {
        issuer: issuer.to_owned(),
        subject: grant.subject.clone(),
        audience: vec![issuer.to_owned()],
        expires_at: now.saturating_add(ttl).min(grant.expires_at),
        not_before: Some(now),
        issued_at: now,
        token_id: random_token(16),
        client_id: grant.client_id.clone(),
        scope: None,
        actors: None,
        grant_id: Some(grant.id.clone()),
        confirmation: None,
        constraints: Some(grant.authorization_details.clone()),
    }
}

/// Signs the user's token for a grant, and records that it was minted.
pub async fn mint_subject_token(
    state: &crate::AppState,
    grant: &Grant,
    now: i64,
) -> Result<String, crate::audit::AuditError> {
    let ttl = state.config.subject_token_ttl;
    let claims = subject_token_claims(grant, &state.config.issuer, now, ttl);
    let token = portcullis_policy::sign(&claims, state.keys().active());
    state
        .audit
        .record(
            "token.minted",
            serde_json::json!({"kind": "subject", "grant_id": grant.id, "sub": grant.subject,
                               "jti": claims.token_id, "exp": claims.expires_at}),
            now,
        )
        .await?;
    Ok(token)
}

/// Counts a mint against a grant's calls-per-hour cap, across every issuer replica: the count
/// and the insert happen in one write transaction, serialised per grant (a row lock on
/// PostgreSQL; SQLite has one writer). Returns whether the mint is within the cap.
pub async fn admit_mint(
    db: &Database,
    grant_id: &str,
    per_hour: u32,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let backend = db.backend();
    let grant_id = grant_id.to_owned();
    db.write(|tx| {
        let grant_id = grant_id.clone();
        Box::pin(async move {
            if backend == crate::db::Backend::Postgres {
                sqlx::query("SELECT id FROM grants WHERE id = $1 FOR UPDATE")
                    .bind(&grant_id)
                    .fetch_optional(&mut **tx)
                    .await?;
            }
            sqlx::query("DELETE FROM grant_mints WHERE grant_id = $1 AND at <= $2")
                .bind(&grant_id)
                .bind(now - 3600)
                .execute(&mut **tx)
                .await?;
            let count: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM grant_mints WHERE grant_id = $1")
                    .bind(&grant_id)
                    .fetch_one(&mut **tx)
                    .await?;
            if count >= i64::from(per_hour) {
                return Ok(false);
            }
            sqlx::query("INSERT INTO grant_mints (grant_id, at) VALUES ($1, $2)")
                .bind(&grant_id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            Ok(true)
        })
    })
    .await
}
