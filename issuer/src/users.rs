//! The built-in user store, for development, demos and small installations.
//!
//! Each person has an argon2id password hash and an *allowance*: the resources and the
//! `mcp_tools` constraints that are the most any consent of theirs can give an agent. A
//! consent narrows the allowance (the agent's request, then the person's own choices); it never
//! widens it. People who sign in elsewhere (an external identity provider) have no row here:
//! operators give their agents grants directly.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use portcullis_policy::Constraints;
use serde::Serialize;
use sqlx::Row;

use crate::db::Database;

/// A person who can sign in at the issuer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// The sign-in name, also the `sub` of tokens made on their behalf.
    pub username: String,
    /// Resources they may delegate access to.
    pub resources: Vec<String>,
    /// The most they may delegate there.
    #[schema(value_type = Vec<Object>)]
    pub authorization_details: Constraints,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, when disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
    /// Whether they may open the operator console.
    pub operator: bool,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The name is not 1-64 characters of `[A-Za-z0-9._@-]`.
    #[error("username must be 1-64 characters of [A-Za-z0-9._@-]")]
    InvalidName,
    /// Shorter than [`MIN_PASSWORD_LEN`].
    #[error("the password must be at least {MIN_PASSWORD_LEN} characters")]
    WeakPassword,
    /// No resources, or one that is not an absolute http(s) URI.
    #[error("resources must be absolute http(s) URIs without a fragment")]
    InvalidResources,
    /// The name is taken.
    #[error("user {0:?} already exists")]
    Exists(String),
    /// No user has this name.
    #[error("no user {0:?}")]
    Unknown(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// A PHC-format argon2id hash of `password` (the crate's defaults: 19 MiB, 2 passes).
fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&crate::secret::random_seed()[..16])
        .expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any password with default parameters")
        .to_string()
}

/// A hash no password matches, verified when the user is unknown so that timing does not
/// reveal which names exist.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&crate::secret::random_token(24)))
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Who to create: [`create`]'s input.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    /// The sign-in name.
    pub username: &'a str,
    /// At least [`MIN_PASSWORD_LEN`] characters.
    pub password: &'a str,
    /// Resources they may delegate access to.
    pub resources: Vec<String>,
    /// The most they may delegate there.
    pub allowance: Constraints,
    /// Whether they may open the operator console.
    pub operator: bool,
}

/// Creates a user, audited.
pub async fn create(db: &Database, new: NewUser<'_>, now: i64) -> Result<User, UserError> {
    let NewUser {
        username,
        password,
        resources,
        allowance,
        operator,
    } = new;
    if !valid_name(username) {
        return Err(UserError::InvalidName);
    }
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(UserError::WeakPassword);
    }
    if resources.is_empty() || !resources.iter().all(|r| crate::grants::valid_resource(r)) {
        return Err(UserError::InvalidResources);
    }
    let user = User {
        username: username.to_owned(),
        resources,
        authorization_details: allowance,
        created_at: now,
        disabled_at: None,
        operator,
    };
    let hash = hash_password(password);
    let row = user.clone();
    let inserted = db
        .write(|tx| {
            let (user, hash) = (row.clone(), hash.clone());
            Box::pin(async move {
                let inserted = sqlx::query(
                    "INSERT INTO users (username, password_hash, resources, authorization_details,
                                        created_at, operator)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (username) DO NOTHING",
                )
                .bind(&user.username)
                .bind(hash)
                .bind(serde_json::to_string(&user.resources).expect("strings serialise"))
                .bind(
                    serde_json::to_string(&user.authorization_details)
                        .expect("constraints serialise"),
                )
                .bind(now)
                .bind(i64::from(user.operator))
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 1 {
                    crate::audit::append(
                        tx,
                        "user.created",
                        serde_json::json!({"username": user.username, "resources": user.resources,
                                           "authorization_details": user.authorization_details,
                                           "operator": user.operator}),
                        now,
                    )
                    .await?;
                }
                Ok(inserted)
            })
        })
        .await?;
    if inserted == 0 {
        return Err(UserError::Exists(user.username));
    }
    Ok(user)
}

/// The enabled user with this name and password, or `None`. An unknown name costs the same
/// argon2 work as a wrong password.
pub async fn authenticate(
    db: &Database,
    username: &str,
    password: &str,
) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT username, password_hash, resources, authorization_details, created_at, disabled_at,
                operator
         FROM users WHERE username = $1 AND disabled_at IS NULL",
    )
    .bind(username)
    .fetch_optional(db.pool())
    .await?;
    let (user, stored) = match &row {
        Some(row) => (
            Some(user_from_row(row)?),
            row.try_get::<String, _>("password_hash")?,
        ),
        None => (None, decoy_hash().to_owned()),
    };
    // argon2 is deliberately slow: keep it off the async workers.
    let password = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || password_matches(&password, &stored))
        .await
        .unwrap_or(false);
    Ok(user.filter(|_| matches))
}

/// The user with this name, enabled or not.
pub async fn get(db: &Database, username: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query(
        "SELECT username, resources, authorization_details, created_at, disabled_at, operator
         FROM users WHERE username = $1",
    )
    .bind(username)
    .fetch_optional(db.pool())
    .await?
    .map(|row| user_from_row(&row))
    .transpose()
}

/// Every user.
pub async fn list(db: &Database) -> Result<Vec<User>, sqlx::Error> {
    sqlx::query(
        "SELECT username, resources, authorization_details, created_at, disabled_at, operator
         FROM users ORDER BY username",
    )
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(user_from_row)
    .collect()
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let decode = |column: &str, e: serde_json::Error| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    };
    Ok(User {
        username: row.try_get("username")?,
        resources: serde_json::from_str(row.try_get("resources")?)
            .map_err(|e| decode("resources", e))?,
        authorization_details: serde_json::from_str(row.try_get("authorization_details")?)
            .map_err(|e| decode("authorization_details", e))?,
        created_at: row.try_get("created_at")?,
        disabled_at: row.try_get("disabled_at")?,
        operator: row.try_get::<i64, _>("operator")? != 0,
    })
}

/// Makes a person an operator, or no longer one; audited. Sessions already open follow at
/// their next request (the console checks the role on every one).
pub async fn set_operator(
    db: &Database,
    username: &str,
    operator: bool,
    now: i64,
) -> Result<User, UserError> {
    let name = username.to_owned();
    let changed = db
        .write(|tx| {
            let name = name.clone();
            Box::pin(async move {
                let changed = sqlx::query("UPDATE users SET operator = $1 WHERE username = $2")
                    .bind(i64::from(operator))
                    .bind(&name)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if changed == 1 {
                    crate::audit::append(
                        tx,
                        "user.operator",
                        serde_json::json!({"username": name, "operator": operator}),
                        now,
                    )
                    .await?;
                }
                Ok(changed)
            })
        })
        .await?;
    if changed == 0 {
        return Err(UserError::Unknown(username.to_owned()));
    }
    get(db, username)
        .await?
        .ok_or_else(|| UserError::Unknown(username.to_owned()))
}
