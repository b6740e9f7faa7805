//! Change freezes set at the issuer: while one is in force, every gateway refuses each
//! `tools/call` whose `upstream/tool` matches its pattern, whatever the grants say. An operator
//! sets one for a change window (from the console, the admin API or the CLI) and lifts it
//! after.
//!
//! Setting and lifting are audited in the change's transaction. The revocation hub reads the
//! set within a second of any change (from any process on the database) and every gateway's
//! revocation stream carries it whole, first on connecting and again on each change (see the
//! revocation module).

use portcullis_policy::freeze::FreezePattern;
use serde::Serialize;
use serde_json::json;
use sqlx::Row;

use crate::audit;
use crate::db::Database;

/// A freeze in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Freeze {
    /// `upstream/tool`, with `*` matching any run of characters.
    #[schema(value_type = String, example = "k8s/*delete*")]
    pub pattern: FreezePattern,
    /// Why, as the operator said.
    pub reason: String,
    /// Who set it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Why a freeze could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// Not a pattern of `[A-Za-z0-9_./-]` and `*`.
    #[error("{0}")]
    InvalidPattern(String),
    /// The reason is empty or longer than 512 characters.
    #[error("say why, in 1 to 512 characters")]
    InvalidReason,
    /// No freeze with this pattern is in force.
    #[error("no freeze {0:?} is in force")]
    NotFrozen(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Every freeze in force, oldest first.
pub async fn list(db: &Database) -> Result<Vec<Freeze>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT pattern, reason, created_by, created_at FROM freezes ORDER BY created_at, pattern",
    )
    .fetch_all(db.pool())
    .await?;
    let mut freezes = Vec::with_capacity(rows.len());
    for row in rows {
        let pattern: String = row.try_get("pattern")?;
        let pattern = FreezePattern::try_from(pattern).map_err(|e| sqlx::Error::ColumnDecode {
            index: "pattern".into(),
            source: e.into(),
        })?;
        freezes.push(Freeze {
            pattern,
            reason: row.try_get("reason")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
        });
    }
    Ok(freezes)
}

/// Sets a freeze (setting one already in force changes nothing); returns it as in force.
pub async fn set(
    db: &Database,
    pattern: &str,
    reason: &str,
    by: &str,
    now: i64,
) -> Result<Freeze, FreezeError> {
    let pattern =
        FreezePattern::try_from(pattern.to_owned()).map_err(FreezeError::InvalidPattern)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 512 {
        return Err(FreezeError::InvalidReason);
    }
    let freeze = Freeze {
        pattern,
        reason: reason.to_owned(),
        created_by: by.to_owned(),
        created_at: now,
    };
    let row = freeze.clone();
    db.write(|tx| {
        let freeze = row.clone();
        Box::pin(async move {
            let inserted = sqlx::query(
                "INSERT INTO freezes (pattern, reason, created_by, created_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (pattern) DO NOTHING",
            )
            .bind(freeze.pattern.as_str())
            .bind(&freeze.reason)
            .bind(&freeze.created_by)
            .bind(freeze.created_at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                audit::append(
                    tx,
                    "freeze.set",
                    json!({"pattern": freeze.pattern.as_str(), "reason": freeze.reason,
                           "by": freeze.created_by}),
                    freeze.created_at,
                )
                .await?;
            }
            Ok(())
        })
    })
    .await?;
    let in_force = list(db).await?;
    Ok(in_force
        .into_iter()
        .find(|f| f.pattern == freeze.pattern)
        .unwrap_or(freeze))
}

/// Lifts a freeze.
pub async fn lift(db: &Database, pattern: &str, by: &str, now: i64) -> Result<(), FreezeError> {
    let pattern = pattern.to_owned();
    let by = by.to_owned();
    let lifted = db
        .write(|tx| {
            let (pattern, by) = (pattern.clone(), by.clone());
            Box::pin(async move {
                let deleted = sqlx::query("DELETE FROM freezes WHERE pattern = $1")
                    .bind(&pattern)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if deleted == 1 {
                    audit::append(
                        tx,
                        "freeze.lifted",
                        json!({"pattern": pattern, "by": by}),
                        now,
                    )
                    .await?;
                }
                Ok(deleted == 1)
            })
        })
        .await?;
    if lifted {
        Ok(())
    } else {
        Err(FreezeError::NotFrozen(pattern))
    }
}
