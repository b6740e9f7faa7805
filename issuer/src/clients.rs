//! Agents as OAuth clients: registration and authentication.
//!
//! An operator registers each agent; the issuer returns a high-entropy secret once and keeps
//! only its hash. Authentication answers the same `invalid_client` for an unknown client and a
//! wrong secret, and does the same hashing work for both.

use serde::Serialize;
use sqlx::Row;

use crate::db::Database;
use crate::secret::{hash_secret, random_token, secret_matches};

/// A registered client, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    /// The OAuth `client_id`.
    pub client_id: String,
    /// A human-readable name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A newly registered client and the only copy of its secret.
#[derive(Debug, Clone, Serialize)]
pub struct NewClient {
    /// The client.
    #[serde(flatten)]
    pub client: Client,
    /// The secret, shown once.
    pub client_secret: String,
}

/// Why a client could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The id has characters outside `[A-Za-z0-9._-]` or is longer than 64.
    #[error("client_id must be 1-64 characters of [A-Za-z0-9._-]")]
    InvalidId,
    /// The id is taken.
    #[error("client {0:?} already exists")]
    Exists(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Registers a client; `client_id` is generated when `None`.
pub async fn register(
    db: &Database,
    client_id: Option<&str>,
    name: &str,
    now: i64,
) -> Result<NewClient, ClientError> {
    let client_id = match client_id {
        Some(id) if valid_id(id) => id.to_owned(),
        Some(_) => return Err(ClientError::InvalidId),
        None => format!(
            "agent-{}",
            random_token(9)
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        ),
    };
    let client_secret = format!("pcs_{}", random_token(32));
    let secret_hash = hash_secret(&client_secret);
    let (id, name_owned) = (client_id.clone(), name.to_owned());
    let inserted = db
        .write(|tx| {
            let (id, name, secret_hash) = (id.clone(), name_owned.clone(), secret_hash.clone());
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO clients (client_id, name, secret_hash, created_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (client_id) DO NOTHING",
                )
                .bind(&id)
                .bind(&name)
                .bind(secret_hash)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    crate::audit::append(
                        tx,
                        "client.registered",
                        serde_json::json!({"client_id": id, "name": name}),
                        now,
                    )
                    .await?;
                }
                Ok(inserted)
            })
        })
        .await?;
    if inserted == 0 {
        return Err(ClientError::Exists(client_id));
    }
    Ok(NewClient {
        client: Client {
            client_id,
            name: name.to_owned(),
            created_at: now,
        },
        client_secret,
    })
}

/// The client with this id and secret, or `None` for an unknown client or a wrong secret.
pub async fn authenticate(
    db: &Database,
    client_id: &str,
    secret: &str,
) -> Result<Option<Client>, sqlx::Error> {
    // A disabled (revoked) agent is as unknown as one never registered.
    let row = sqlx::query(
        "SELECT client_id, name, secret_hash, created_at FROM clients
         WHERE client_id = $1 AND disabled_at IS NULL",
    )
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        // Same work as a wrong secret, so timing does not reveal which client ids exist.
        let _unknown = secret_matches(secret, &hash_secret(""));
        return Ok(None);
    };
    if !secret_matches(secret, row.try_get("secret_hash")?) {
        return Ok(None);
    }
    Ok(Some(client_from_row(&row)?))
}

/// Whether a client with this id is registered.
pub async fn get(db: &Database, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    sqlx::query("SELECT client_id, name, created_at FROM clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(db.pool())
        .await?
        .map(|row| client_from_row(&row))
        .transpose()
}

/// Every registered client.
pub async fn list(db: &Database) -> Result<Vec<Client>, sqlx::Error> {
    sqlx::query("SELECT client_id, name, created_at FROM clients ORDER BY client_id")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(client_from_row)
        .collect()
}

fn client_from_row(row: &sqlx::any::AnyRow) -> Result<Client, sqlx::Error> {
    Ok(Client {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}
