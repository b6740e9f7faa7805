//! The issuer's database: SQLite in a data directory by default, PostgreSQL in production.
//!
//! Both go through sqlx's `Any` driver with one set of portable migrations and queries (`$n`
//! placeholders, `BIGINT` times, `TEXT` documents), so the whole test suite runs unchanged on
//! either backend. Writes that must survive a crash (keys, grants, and later revocations)
//! commit before the API answers; SQLite runs in WAL mode with full synchronous commits.

use std::path::Path;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Executor, Transaction};

/// How often a write that lost a race for a sequence number is retried.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// Which SQL engine a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The longest a request waits for a database connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection pool plus the backend it talks to.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

/// Why the database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// Connecting or querying failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Database {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        let options: AnyConnectOptions = url
            .parse::<AnyConnectOptions>()?
            .disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            // While the database is unreachable a request waits this long for a connection,
            // then is answered 5xx: well inside the timeouts clients use, so they see an error,
            // not a hang (a PostgreSQL restart is recovered from as soon as it is back).
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    /// Opens (creating if needed) `portcullis.db` in `data_dir`.
    pub async fn open_sqlite_in(data_dir: &Path) -> Result<Self, DbError> {
        Self::connect(&sqlite_url(data_dir)).await
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), DbError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `work` in a write transaction and commits it, retrying from the start when it lost
    /// a race for a primary key (two writers taking the same next sequence number).
    ///
    /// SQLite transactions start `IMMEDIATE`, taking the write lock before the first read: a
    /// deferred transaction that reads and then writes can fail outright instead of waiting.
    pub async fn write<T, F>(&self, mut work: F) -> Result<T, sqlx::Error>
    where
        F: for<'t> FnMut(
            &'t mut Transaction<'static, Any>,
        ) -> BoxFuture<'t, Result<T, sqlx::Error>>,
    {
        let mut attempt = 1;
        loop {
            let mut tx = match self.backend {
                Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
                Backend::Postgres => self.pool.begin().await?,
            };
            match work(&mut tx).await {
                Ok(value) => {
                    tx.commit().await?;
                    return Ok(value);
                }
                Err(e) if attempt < MAX_WRITE_ATTEMPTS && is_conflict(&e) => {
                    tx.rollback().await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The URL of the default SQLite database inside `data_dir`.
pub fn sqlite_url(data_dir: &Path) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        data_dir.join("portcullis.db").display()
    )
}
