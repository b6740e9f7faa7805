//! Throttled sign-in: a password cannot be guessed online.
//!
//! Failed sign-ins are counted per user and per client address in the database, so every
//! replica sees the same counts. Once a user has [`USER_LIMIT`] failures, or an address
//! [`ADDRESS_LIMIT`], within [`WINDOW`] seconds, sign-in for it is refused until the window
//! ends, whatever the password: the answer is the same for right and wrong ones, and no
//! password is checked (argon2 is not run for a refused attempt). A successful sign-in clears
//! the user's count. Both sign-in forms (the authorization flow's and the pages') go through
//! here.
//!
//! The address is the TCP peer's: behind a proxy it is the proxy's, so the per-user limit is
//! the one that holds there.

use std::net::IpAddr;

use sqlx::Row;

use crate::db::Database;

/// Failures a user may have in a window.
pub const USER_LIMIT: i64 = 5;
/// Failures an address may have in a window.
pub const ADDRESS_LIMIT: i64 = 20;
/// The window, seconds.
pub const WINDOW: i64 = 15 * 60;

/// Who is signing in, as counted.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    user: String,
    address: Option<String>,
}

impl Attempt {
    /// A sign-in as `username` from `address` (when known).
    pub(crate) fn new(username: &str, address: Option<IpAddr>) -> Self {
        Self {
            user: format!("user:{username}"),
            address: address.map(|ip| format!("addr:{ip}")),
        }
    }

    fn keys(&self) -> impl Iterator<Item = (&str, i64)> {
        std::iter::once((self.user.as_str(), USER_LIMIT))
            .chain(self.address.as_deref().map(|a| (a, ADDRESS_LIMIT)))
    }

    /// Seconds until sign-in is allowed again, when the user or the address is throttled.
    pub(crate) async fn refused_for(
        &self,
        db: &Database,
        now: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let mut wait = None;
        for (key, limit) in self.keys() {
            let row =
                sqlx::query("SELECT failures, window_start FROM sign_in_failures WHERE key = $1")
                    .bind(key)
                    .fetch_optional(db.pool())
                    .await?;
            if let Some(row) = row {
                let (failures, start): (i64, i64) =
                    (row.try_get("failures")?, row.try_get("window_start")?);
                let ends = start + WINDOW;
                if failures >= limit && ends > now {
                    wait = Some(wait.unwrap_or(0).max(ends - now));
                }
            }
        }
        Ok(wait)
    }

    /// Counts a failed sign-in against the user and the address.
    pub(crate) async fn failed(&self, db: &Database, now: i64) -> Result<(), sqlx::Error> {
        for (key, _) in self.keys() {
            sqlx::query(
                "INSERT INTO sign_in_failures (key, failures, window_start) VALUES ($1, 1, $2)
                 ON CONFLICT (key) DO UPDATE SET
                   failures = CASE WHEN sign_in_failures.window_start <= $2 - $3 THEN 1
                                   ELSE sign_in_failures.failures + 1 END,
                   window_start = CASE WHEN sign_in_failures.window_start <= $2 - $3 THEN $2
                                       ELSE sign_in_failures.window_start END",
            )
            .bind(key)
            .bind(now)
            .bind(WINDOW)
            .execute(db.pool())
            .await?;
        }
        Ok(())
    }

    /// Clears the user's count after a successful sign-in (the address keeps its own).
    pub(crate) async fn succeeded(&self, db: &Database) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(&self.user)
            .execute(db.pool())
            .await?;
        Ok(())
    }
}

/// The message a throttled person reads.
pub(crate) fn refusal(wait: i64) -> String {
    let minutes = (wait + 59) / 60;
    format!(
        "Too many failed sign-ins. Try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    )
}
