//! OAuth clients: agents registered by an operator, clients that registered themselves
//! (RFC 7591), and clients known by a metadata document URL.
//!
//! An operator registers each agent; the issuer returns a high-entropy secret once and keeps
//! only its hash. Authentication answers the same `invalid_client` for an unknown client and a
//! wrong secret, and does the same hashing work for both. Public clients (`none`) and clients
//! that sign assertions (`private_key_jwt`) have no secret at all: their stored hash is empty,
//! which no secret hashes to.
//!
//! Each client is stored with the grant types it may use ([`GrantTypes`]; the rule for each
//! origin is in [`crate::token::grant_type`]): an operator's agent every grant type it could
//! always use, a client that registered itself only what it registered for.

use portcullis_policy::key::JwkSet;
use serde::Serialize;
use sqlx::Row;

use crate::db::Database;
use crate::secret::{hash_secret, random_token, secret_matches};
use crate::token::grant_type::GrantTypes;

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A shared secret, by `client_secret_basic` or `client_secret_post`.
    #[serde(rename = "client_secret_basic")]
    ClientSecret,
    /// A public client: no authentication; PKCE binds its codes.
    None,
    /// A JWT signed with one of the client's registered keys (RFC 7523).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The RFC 7591 name (`client_secret_post` reads as [`AuthMethod::ClientSecret`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "client_secret_basic" | "client_secret_post" => Some(Self::ClientSecret),
            "none" => Some(Self::None),
            "private_key_jwt" => Some(Self::PrivateKeyJwt),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret_basic",
            Self::None => "none",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// Where a client's registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Registered by an operator (CLI or admin API).
    Operator,
    /// Registered itself (RFC 7591).
    Dynamic,
    /// Its `client_id` is the URL of its metadata document.
    Metadata,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Dynamic => "dynamic",
            Self::Metadata => "metadata",
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "dynamic" => Self::Dynamic,
            "metadata" => Self::Metadata,
            _ => Self::Operator,
        }
    }
}

/// A registered client, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Client {
    /// The OAuth `client_id`.
    pub client_id: String,
    /// A human-readable name.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Where authorization responses may be sent; empty for clients that never redirect.
    pub redirect_uris: Vec<String>,
    /// How it authenticates: `client_secret_basic`, `none` or `private_key_jwt`.
    #[schema(value_type = String)]
    pub auth_method: AuthMethod,
    /// Its public keys, for `private_key_jwt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<JwkSet>,
    /// Where its registration came from: `operator`, `dynamic` or `metadata`.
    #[schema(value_type = String)]
    pub origin: Origin,
    /// When its metadata document was last fetched (metadata clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_at: Option<i64>,
    /// The grant types it may use at the token endpoint.
    #[schema(value_type = Vec<String>)]
    pub grant_types: GrantTypes,
}

/// A newly registered client and the only copy of its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// A fresh client id: `prefix` and 12 random characters.
pub fn generated_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        random_token(9)
            .to_ascii_lowercase()
            .replace(['-', '_'], "x")
    )
}

/// Registers an agent for an operator; `client_id` is generated when `None`. The agent
/// authenticates with the returned secret and may use every grant type; `redirect_uris` lets
/// it also use the authorization-code flow.
pub async fn register(
    db: &Database,
    client_id: Option<&str>,
    name: &str,
    redirect_uris: Vec<String>,
    now: i64,
) -> Result<NewClient, ClientError> {
    let client_id = match client_id {
        Some(id) if valid_id(id) => id.to_owned(),
        Some(_) => return Err(ClientError::InvalidId),
        None => generated_id("agent"),
    };
    let client_secret = format!("pcs_{}", random_token(32));
    let client = Client {
        client_id,
        name: name.to_owned(),
        created_at: now,
        redirect_uris,
        auth_method: AuthMethod::ClientSecret,
        jwks: None,
        origin: Origin::Operator,
        fetched_at: None,
        grant_types: GrantTypes::all(),
    };
    if !insert(db, &client, &hash_secret(&client_secret), false).await? {
        return Err(ClientError::Exists(client.client_id));
    }
    Ok(NewClient {
        client,
        client_secret,
    })
}

/// Stores a client, audited. With `replace`, an existing client of the same origin is updated
/// (a refetched metadata document); otherwise an existing id is left alone and `false` returned.
pub async fn insert(
    db: &Database,
    client: &Client,
    secret_hash: &str,
    replace: bool,
) -> Result<bool, sqlx::Error> {
    macro_rules! insert {
        ($conflict:literal) => {
            concat!(
                "INSERT INTO clients (client_id, name, secret_hash, created_at, redirect_uris,
                                      auth_method, jwks, origin, fetched_at, grant_types)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ",
                $conflict
            )
        };
    }
    let sql = if replace {
        insert!(
            "ON CONFLICT (client_id) DO UPDATE SET name = excluded.name,
               redirect_uris = excluded.redirect_uris, auth_method = excluded.auth_method,
               jwks = excluded.jwks, fetched_at = excluded.fetched_at,
               grant_types = excluded.grant_types
             WHERE clients.origin = excluded.origin"
        )
    } else {
        insert!("ON CONFLICT (client_id) DO NOTHING")
    };
    let (client, secret_hash) = (client.clone(), secret_hash.to_owned());
    db.write(|tx| {
        let (client, secret_hash) = (client.clone(), secret_hash.clone());
        Box::pin(async move {
            let redirect_uris = (!client.redirect_uris.is_empty())
                .then(|| serde_json::to_string(&client.redirect_uris).expect("strings serialise"));
            let jwks = client
                .jwks
                .as_ref()
                .map(|jwks| serde_json::to_string(jwks).expect("JWKs serialise"));
            let written = sqlx::query(sql)
                .bind(&client.client_id)
                .bind(&client.name)
                .bind(secret_hash)
                .bind(client.created_at)
                .bind(redirect_uris)
                .bind(client.auth_method.as_str())
                .bind(jwks)
                .bind(client.origin.as_str())
                .bind(client.fetched_at)
                .bind(client.grant_types.to_stored())
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if written == 1 {
                crate::audit::append(
                    tx,
                    "client.registered",
                    serde_json::json!({
                        "client_id": client.client_id, "name": client.name,
                        "origin": client.origin.as_str(), "redirect_uris": client.redirect_uris,
                        "auth_method": client.auth_method.as_str(),
                        "grant_types": client.grant_types,
                    }),
                    client.fetched_at.unwrap_or(client.created_at),
                )
                .await?;
            }
            Ok(written == 1)
        })
    })
    .await
}

/// The columns [`client_from_row`] reads.
macro_rules! columns {
    () => {
        "client_id, name, created_at, redirect_uris, auth_method, jwks, origin, fetched_at, \
         grant_types"
    };
}

/// The client with this id and secret, or `None` for an unknown client or a wrong secret.
pub async fn authenticate(
    db: &Database,
    client_id: &str,
    secret: &str,
) -> Result<Option<Client>, sqlx::Error> {
    // A disabled (revoked) agent is as unknown as one never registered.
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        ", secret_hash FROM clients WHERE client_id = $1 AND disabled_at IS NULL"
    ))
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

/// The client with this id, if registered.
pub async fn get(db: &Database, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM clients WHERE client_id = $1"
    ))
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?
    .map(|row| client_from_row(&row))
    .transpose()
}

/// The client with this id, unless unknown or disabled.
pub async fn get_enabled(db: &Database, client_id: &str) -> Result<Option<Client>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM clients WHERE client_id = $1 AND disabled_at IS NULL"
    ))
    .bind(client_id)
    .fetch_optional(db.pool())
    .await?
    .map(|row| client_from_row(&row))
    .transpose()
}

/// Every registered client.
pub async fn list(db: &Database) -> Result<Vec<Client>, sqlx::Error> {
    sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM clients ORDER BY client_id"
    ))
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(client_from_row)
    .collect()
}

fn client_from_row(row: &sqlx::any::AnyRow) -> Result<Client, sqlx::Error> {
    let decode = |column: &str, e: serde_json::Error| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    };
    let redirect_uris: Option<String> = row.try_get("redirect_uris")?;
    let jwks: Option<String> = row.try_get("jwks")?;
    let auth_method: String = row.try_get("auth_method")?;
    let grant_types: String = row.try_get("grant_types")?;
    Ok(Client {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        redirect_uris: redirect_uris
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| decode("redirect_uris", e))?
            .unwrap_or_default(),
        auth_method: AuthMethod::from_name(&auth_method).ok_or_else(|| {
            sqlx::Error::ColumnDecode {
                index: "auth_method".into(),
                source: format!("unknown method {auth_method:?}").into(),
            }
        })?,
        jwks: jwks
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|e| decode("jwks", e))?,
        origin: Origin::from_name(row.try_get("origin")?),
        fetched_at: row.try_get("fetched_at")?,
        grant_types: GrantTypes::from_stored(&grant_types).map_err(|e| {
            sqlx::Error::ColumnDecode {
                index: "grant_types".into(),
                source: Box::new(e),
            }
        })?,
    })
}
