//! `portcullis-issuer`: the issuer's server and operator CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use portcullis_issuer::grants::GrantRequest;
use portcullis_issuer::{Issuer, IssuerConfig, StorageOptions, clients, grants, keys, now};

/// The Portcullis issuer: RFC 8693 token exchange that turns a user's grant into short-lived,
/// attenuated delegation tokens for AI agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis-issuer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Storage {
    /// Data directory: holds the SQLite database and, in development, the key-encryption secret.
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "portcullis-data")]
    data_dir: PathBuf,
    /// Database URL instead of SQLite in the data directory, e.g. postgres://user@host/db.
    #[arg(long, env = "PORTCULLIS_DATABASE_URL")]
    database_url: Option<String>,
    /// File holding the secret that seals signing keys at rest (32+ random characters). The
    /// secret can also come from PORTCULLIS_KEY_ENCRYPTION_SECRET. Without either, a development
    /// secret is generated into the data directory.
    #[arg(long, env = "PORTCULLIS_KEY_ENCRYPTION_SECRET_FILE")]
    key_encryption_secret_file: Option<PathBuf>,
    /// The issuer identifier: its public base URL, as gateways and clients reach it.
    #[arg(
        long,
        env = "PORTCULLIS_ISSUER_URL",
        default_value = "http://127.0.0.1:9000"
    )]
    issuer_url: String,
}

impl Storage {
    fn options(&self) -> anyhow::Result<StorageOptions> {
        let key_encryption_secret = match &self.key_encryption_secret_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
            ),
            None => std::env::var("PORTCULLIS_KEY_ENCRYPTION_SECRET").ok(),
        };
        Ok(StorageOptions {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            key_encryption_secret,
        })
    }

    async fn open(&self, config: IssuerConfig) -> anyhow::Result<Issuer> {
        Ok(Issuer::open(config, &self.options()?).await?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (token endpoint, JWKS, metadata, admin API).
    Serve {
        #[command(flatten)]
        storage: Storage,
        /// Address to listen on.
        #[arg(
            long,
            env = "PORTCULLIS_ISSUER_LISTEN",
            default_value = "127.0.0.1:9000"
        )]
        listen: SocketAddr,
        /// File holding the bearer token for the /admin API (also PORTCULLIS_ADMIN_TOKEN).
        /// Without one, the admin API is disabled; the CLI works either way.
        #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN_FILE")]
        admin_token_file: Option<PathBuf>,
        /// Lifetime of delegation tokens, in seconds.
        #[arg(long, default_value_t = 300)]
        delegation_ttl: i64,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        storage: Storage,
    },
    /// Register and list agents (OAuth clients).
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Create and list grants.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Print a user's subject token for a grant (the subject_token of a first exchange).
    Mint {
        #[command(flatten)]
        storage: Storage,
        /// The grant id.
        #[arg(long)]
        grant: String,
    },
    /// Inspect signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Register an agent; prints its client_id and secret (shown only once) as JSON.
    Create {
        #[command(flatten)]
        storage: Storage,
        /// A human-readable name.
        #[arg(long)]
        name: String,
        /// The client_id to use (1-64 of [A-Za-z0-9._-]); generated when omitted.
        #[arg(long)]
        id: Option<String>,
    },
    /// List registered agents.
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Debug, Subcommand)]
enum GrantsCommand {
    /// Give an agent bounded authority on behalf of a user; prints the grant as JSON.
    Create {
        #[command(flatten)]
        storage: Storage,
        /// The user (the `sub` of every token from this grant).
        #[arg(long)]
        user: String,
        /// The agent's client_id.
        #[arg(long)]
        client: String,
        /// A resource the grant may be used at (the gateway URL of one upstream); repeatable.
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// RFC 9396 authorization_details with one "mcp_tools" entry, as JSON or @FILE.
        #[arg(long)]
        details: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        expires_in: i64,
    },
    /// List grants.
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List signing keys (never their secrets).
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

/// Resolves on Ctrl-C or SIGTERM (what container runtimes send), so in-flight requests finish.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn read_arg(text: &str) -> anyhow::Result<String> {
    match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}")),
        None => Ok(text.to_owned()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            storage,
            listen,
            admin_token_file,
            delegation_ttl,
        } => {
            if delegation_ttl <= 0 {
                bail!("--delegation-ttl must be positive");
            }
            let mut config = IssuerConfig::new(&storage.issuer_url);
            config.delegation_ttl = delegation_ttl;
            config.admin_token = match admin_token_file {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?
                        .trim()
                        .to_owned(),
                ),
                None => std::env::var("PORTCULLIS_ADMIN_TOKEN").ok(),
            };
            if config.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
                bail!("the admin token must be at least 16 characters");
            }
            let issuer = storage.open(config).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(
                "issuer {} listening on {}",
                storage.issuer_url,
                listener.local_addr()?
            );
            portcullis_issuer::serve(listener, issuer.state().clone(), shutdown_signal()).await?;
        }
        Command::Migrate { storage } => {
            let db = portcullis_issuer::open_database(&storage.options()?).await?;
            db.migrate().await?;
            eprintln!("database is up to date");
        }
        Command::Clients(ClientsCommand::Create { storage, name, id }) => {
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let created =
                clients::register(&issuer.state().db, id.as_deref(), &name, now()).await?;
            print_json(&created)?;
        }
        Command::Clients(ClientsCommand::List { storage }) => {
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            print_json(&clients::list(&issuer.state().db).await?)?;
        }
        Command::Grants(GrantsCommand::Create {
            storage,
            user,
            client,
            resources,
            details,
            expires_in,
        }) => {
            let details: Vec<serde_json::Value> = serde_json::from_str(&read_arg(&details)?)
                .context("--details is not a JSON array")?;
            let authorization_details =
                portcullis_policy::Constraints::from_authorization_details(&details)?;
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let request = GrantRequest {
                subject: user,
                client_id: client,
                resources,
                authorization_details,
                expires_in,
            };
            print_json(&grants::create(&issuer.state().db, request, now()).await?)?;
        }
        Command::Grants(GrantsCommand::List { storage }) => {
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            print_json(&grants::list(&issuer.state().db).await?)?;
        }
        Command::Mint { storage, grant } => {
            let config = IssuerConfig::new(&storage.issuer_url);
            let ttl = config.subject_token_ttl;
            let issuer = storage.open(config).await?;
            let state = issuer.state();
            let Some(grant) = grants::get(&state.db, &grant).await? else {
                bail!("no grant {grant}");
            };
            if !grant.is_active(now()) {
                bail!("grant {} is revoked or expired", grant.id);
            }
            println!(
                "{}",
                grants::mint_subject_token(
                    &grant,
                    &state.keyring,
                    &state.config.issuer,
                    now(),
                    ttl
                )
            );
        }
        Command::Keys(KeysCommand::List { storage }) => {
            let db = portcullis_issuer::open_database(&storage.options()?).await?;
            print_json(&keys::list(&db).await?)?;
        }
    }
    Ok(())
}
