//! `portcullis-issuer`: the issuer's server and operator CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use portcullis_issuer::grants::GrantRequest;
use portcullis_issuer::{
    Issuer, IssuerConfig, StorageOptions, client_metadata, clients, grants, grants_file, keys, now,
    revocation, users,
};
use portcullis_policy::RevocationKind;

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
        /// File holding the bearer token gateways use to ship decision events to
        /// POST /audit/decisions (also PORTCULLIS_AUDIT_INGEST_TOKEN). Without one, the
        /// endpoint is disabled.
        #[arg(long, env = "PORTCULLIS_AUDIT_INGEST_TOKEN_FILE")]
        audit_ingest_token_file: Option<PathBuf>,
        /// Lifetime of delegation tokens, in seconds.
        #[arg(long, default_value_t = 300)]
        delegation_ttl: i64,
        /// Lifetime of a grant made by consent (and of its refresh tokens), in seconds.
        #[arg(long, default_value_t = 30 * 24 * 3600)]
        consent_ttl: i64,
        /// Close POST /register (RFC 7591): only operator-registered clients and clients with
        /// a metadata document URL can then ask for consent.
        #[arg(long, env = "PORTCULLIS_NO_DYNAMIC_REGISTRATION")]
        no_dynamic_registration: bool,
        /// YAML list of trusted identity providers whose ID or access tokens may be the
        /// subject_token of a first exchange: issuer, jwks_uri, audience, user_claim (default
        /// sub), algorithms (default RS256, ES256, EdDSA).
        #[arg(long, env = "PORTCULLIS_TRUSTED_IDPS_FILE")]
        trusted_idps: Option<PathBuf>,
        /// DEVELOPMENT ONLY: fetch client metadata documents from loopback addresses, over
        /// plain http too. Private and link-local addresses stay refused.
        #[arg(long, env = "PORTCULLIS_DEV_ALLOW_LOOPBACK_FETCH")]
        dev_allow_loopback_fetch: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        storage: Storage,
    },
    /// Create and list people who sign in at the issuer and consent for agents.
    #[command(subcommand)]
    Users(UsersCommand),
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
    /// Inspect, rotate and prune signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Revoke a token, a grant (and every token delegated from it), an agent, a user, or an MCP
    /// session. Committed before this command returns; running issuers push it to gateways.
    Revoke {
        #[command(flatten)]
        storage: Storage,
        #[command(flatten)]
        target: RevokeTarget,
        /// Why, for the audit log.
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
    },
    /// Decode a token and explain its authority in plain words (verified against this issuer's keys).
    Show {
        #[command(flatten)]
        storage: Storage,
        /// The token (a JWT), or @FILE.
        token: String,
    },
    /// Work with the hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RevokeTarget {
    /// A token, by its JWT or its jti.
    #[arg(long)]
    token: Option<String>,
    /// A grant id: the grant and every token delegated from it.
    #[arg(long)]
    grant: Option<String>,
    /// An agent's client_id: it can no longer authenticate, and every token it appears in falls.
    #[arg(long)]
    agent: Option<String>,
    /// A user: every grant and token of theirs.
    #[arg(long)]
    user: Option<String>,
    /// An MCP session id at the gateways.
    #[arg(long)]
    session: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole chain; exits non-zero and names the first modified, deleted or reordered
    /// event. Prints the chain head: record it elsewhere to detect a truncated tail later.
    Verify {
        #[command(flatten)]
        storage: Storage,
    },
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
        /// Where authorization responses may go (exact match; https, or http to loopback);
        /// repeatable. Needed for the authorization-code flow.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public client (a native or browser app that cannot keep a secret): no secret is
        /// made, and it may only use the authorization-code flow, bound by PKCE.
        #[arg(long, requires = "redirect_uris")]
        public: bool,
    },
    /// List registered agents.
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a person who can sign in and consent, with the most they may delegate.
    Create {
        #[command(flatten)]
        storage: Storage,
        /// The sign-in name (1-64 of [A-Za-z0-9._@-]); the `sub` of their tokens.
        username: String,
        /// File holding the password (at least 12 characters); without it, the password is
        /// read from PORTCULLIS_USER_PASSWORD.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// A resource they may delegate access to; repeatable.
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// Their allowance: RFC 9396 authorization_details with one "mcp_tools" entry, as JSON
        /// or @FILE. A consent can only narrow it.
        #[arg(long)]
        allow: String,
    },
    /// List people.
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
    /// Check a grants file for errors and risky grants; exits non-zero on an error (for CI).
    Lint {
        /// The grants file (YAML).
        file: PathBuf,
        /// Treat warnings as errors too.
        #[arg(long)]
        strict: bool,
    },
    /// Make the named grants in force match a grants file; prints what changed. Idempotent.
    Apply {
        #[command(flatten)]
        storage: Storage,
        /// The grants file (YAML).
        file: PathBuf,
        /// Also revoke named grants that are not in the file.
        #[arg(long)]
        prune: bool,
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Which users and agents could make this call now, and why the others could not.
    WhoCan {
        #[command(flatten)]
        storage: Storage,
        /// The tool, as upstream/tool.
        #[arg(long)]
        tool: String,
        /// An argument, as JSON-POINTER=VALUE (VALUE is JSON, or else a string); repeatable.
        #[arg(long = "arg")]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List signing keys (never their secrets).
    List {
        #[command(flatten)]
        storage: Storage,
    },
    /// Make a new key the one that signs; the old ones stay in the JWKS until pruned. Running
    /// issuers pick the change up within seconds.
    Rotate {
        #[command(flatten)]
        storage: Storage,
    },
    /// Delete keys retired long enough ago that no token they signed is still valid.
    Prune {
        #[command(flatten)]
        storage: Storage,
        /// Keep keys retired less than this many seconds ago (default: the longest token lifetime plus a minute).
        #[arg(long)]
        older_than: Option<i64>,
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

/// Sets `value` at a JSON Pointer, creating objects on the way.
fn set_pointer(
    root: &mut serde_json::Value,
    pointer: &str,
    value: serde_json::Value,
) -> anyhow::Result<()> {
    let Some(path) = pointer.strip_prefix('/') else {
        bail!("{pointer:?} is not a JSON Pointer (it starts with '/')");
    };
    let mut node = root;
    let parts: Vec<String> = path
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let object = node.as_object_mut().ok_or_else(|| {
            anyhow::anyhow!("{pointer:?} goes through a value that is not an object")
        })?;
        if i + 1 == parts.len() {
            object.insert(part.clone(), value);
            return Ok(());
        }
        node = object
            .entry(part.clone())
            .or_insert_with(|| serde_json::json!({}));
    }
    Ok(())
}

fn revoke_target(
    state: &portcullis_issuer::AppState,
    target: RevokeTarget,
) -> anyhow::Result<(RevocationKind, String, Option<i64>)> {
    Ok(match target {
        RevokeTarget {
            token: Some(token), ..
        } if token.contains('.') => {
            // A JWT: take its jti and expiry from the verified token.
            let claims = verified_even_if_expired(state, &token)?.into_claims();
            (
                RevocationKind::Token,
                claims.token_id,
                Some(claims.expires_at),
            )
        }
        RevokeTarget {
            token: Some(jti), ..
        } => (RevocationKind::Token, jti, None),
        RevokeTarget { grant: Some(v), .. } => (RevocationKind::Grant, v, None),
        RevokeTarget { agent: Some(v), .. } => (RevocationKind::Agent, v, None),
        RevokeTarget { user: Some(v), .. } => (RevocationKind::User, v, None),
        RevokeTarget {
            session: Some(v), ..
        } => (RevocationKind::Session, v, None),
        RevokeTarget { .. } => bail!("name what to revoke"),
    })
}

fn verified_even_if_expired(
    state: &portcullis_issuer::AppState,
    token: &str,
) -> anyhow::Result<portcullis_policy::VerifiedToken> {
    let keys = state.keys();
    match keys.verifier().dangerous_verify_any_audience(token, now()) {
        Ok(verified) => Ok(verified),
        // Still worth showing (and proving authentic): check it as of just before it expired.
        Err(portcullis_policy::VerifyError::Expired { exp, .. }) => Ok(keys
            .verifier()
            .dangerous_verify_any_audience(token, exp - 1)?),
        Err(e) => Err(e).context("this token is not one of this issuer's"),
    }
}

async fn explain(state: &portcullis_issuer::AppState, token: &str) -> anyhow::Result<Vec<String>> {
    let verified = verified_even_if_expired(state, token)?;
    let claims = verified.claims();
    let now = now();
    let mut lines = Vec::new();
    let chain: Vec<&str> = claims
        .actors
        .iter()
        .flat_map(|c| c.actors())
        .map(|a| a.sub.as_str())
        .collect();
    lines.push(match chain.as_slice() {
        [] if claims.grant_id.is_some() => format!(
            "{}'s own token for grant {}",
            claims.subject,
            claims.grant_id.as_deref().unwrap_or("")
        ),
        [] => format!("client token of {}", claims.subject),
        [current] => {
            format!("{current} acting for {}", claims.subject)
        }
        [current, earlier @ ..] => format!(
            "{current} acting for {} (delegated through {})",
            claims.subject,
            earlier.join(" ← ")
        ),
    });
    lines.push(format!("for {}", claims.audience.join(", ")));
    let status = if claims.expires_at <= now {
        "EXPIRED".to_owned()
    } else if let Some(entry) = revocation::covering(&state.db, claims, now).await? {
        format!(
            "REVOKED (revocation {}, {})",
            entry.seq,
            entry.kind.as_str()
        )
    } else {
        format!("valid for {} more seconds", claims.expires_at - now)
    };
    lines.push(format!("{status}; token id {}", claims.token_id));
    if let Some(constraints) = &claims.constraints {
        lines.extend(constraints.describe().into_iter().map(|l| format!("  {l}")));
    }
    Ok(lines)
}

/// A bearer token from a file or, without one, an environment variable; at least 16 characters.
fn bearer_token(file: Option<PathBuf>, env: &str) -> anyhow::Result<Option<String>> {
    let token = match file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => std::env::var(env).ok(),
    };
    if token.as_ref().is_some_and(|t| t.len() < 16) {
        bail!("the token from {env} (or its file) must be at least 16 characters");
    }
    Ok(token)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        // A reader that stopped reading (`| head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
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
            audit_ingest_token_file,
            delegation_ttl,
            consent_ttl,
            no_dynamic_registration,
            dev_allow_loopback_fetch,
            trusted_idps,
        } => {
            if delegation_ttl <= 0 || consent_ttl <= 0 {
                bail!("--delegation-ttl and --consent-ttl must be positive");
            }
            let mut config = IssuerConfig::new(&storage.issuer_url);
            config.delegation_ttl = delegation_ttl;
            config.consent_ttl = consent_ttl;
            config.dynamic_registration = !no_dynamic_registration;
            config.allow_loopback_fetch = dev_allow_loopback_fetch;
            if let Some(path) = trusted_idps {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                config.trusted_idps =
                    serde_yaml::from_str(&text).with_context(|| format!("{}", path.display()))?;
            }
            if dev_allow_loopback_fetch {
                tracing::warn!(
                    "DEVELOPMENT MODE: client metadata documents may be fetched from loopback"
                );
            }
            config.admin_token = bearer_token(admin_token_file, "PORTCULLIS_ADMIN_TOKEN")?;
            config.audit_ingest_token =
                bearer_token(audit_ingest_token_file, "PORTCULLIS_AUDIT_INGEST_TOKEN")?;
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
        Command::Clients(ClientsCommand::Create {
            storage,
            name,
            id,
            redirect_uris,
            public,
        }) => {
            if let Some(bad) = redirect_uris
                .iter()
                .find(|u| !client_metadata::valid_redirect_uri(u))
            {
                bail!("--redirect-uri {bad}: use https, or http to a loopback host");
            }
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let db = &issuer.state().db;
            if public {
                let client = clients::Client {
                    client_id: id.unwrap_or_else(|| clients::generated_id("app")),
                    name,
                    created_at: now(),
                    redirect_uris,
                    auth_method: clients::AuthMethod::None,
                    jwks: None,
                    origin: clients::Origin::Operator,
                    fetched_at: None,
                };
                if !clients::insert(db, &client, "", false).await? {
                    bail!("client {:?} already exists", client.client_id);
                }
                print_json(&client)?;
            } else {
                let created =
                    clients::register(db, id.as_deref(), &name, redirect_uris, now()).await?;
                print_json(&created)?;
            }
        }
        Command::Users(UsersCommand::Create {
            storage,
            username,
            password_file,
            resources,
            allow,
        }) => {
            let password = match password_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => std::env::var("PORTCULLIS_USER_PASSWORD")
                    .context("give --password-file or set PORTCULLIS_USER_PASSWORD")?,
            };
            let details: Vec<serde_json::Value> =
                serde_json::from_str(&read_arg(&allow)?).context("--allow is not a JSON array")?;
            let allowance = portcullis_policy::Constraints::from_authorization_details(&details)
                .context("--allow")?;
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let user = users::create(
                &issuer.state().db,
                &username,
                &password,
                resources,
                allowance,
                now(),
            )
            .await?;
            print_json(&user)?;
        }
        Command::Users(UsersCommand::List { storage }) => {
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            print_json(&users::list(&issuer.state().db).await?)?;
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
                name: None,
                subject: user,
                client_id: client,
                resources,
                authorization_details,
                expires_in,
            };
            print_json(&grants::create(&issuer.state().db, request, now()).await?)?;
        }
        Command::Grants(GrantsCommand::Lint { file, strict }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed = grants_file::parse(&text).with_context(|| file.display().to_string())?;
            let findings = grants_file::lint(&parsed);
            for f in &findings {
                println!(
                    "{}: {:?}: {}: {}",
                    file.display(),
                    f.severity,
                    f.grant,
                    f.message
                );
            }
            let failing = findings
                .iter()
                .any(|f| f.severity == grants_file::Severity::Error || strict);
            if failing {
                bail!("{} finding(s) in {}", findings.len(), file.display());
            }
            println!("{}: {} grant(s), ok", file.display(), parsed.grants.len());
        }
        Command::Grants(GrantsCommand::Apply {
            storage,
            file,
            prune,
            dry_run,
        }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let parsed = grants_file::parse(&text).with_context(|| file.display().to_string())?;
            let errors: Vec<_> = grants_file::lint(&parsed)
                .into_iter()
                .filter(|f| f.severity == grants_file::Severity::Error)
                .collect();
            if let Some(first) = errors.first() {
                bail!(
                    "{} has errors (run grants lint): {}: {}",
                    file.display(),
                    first.grant,
                    first.message
                );
            }
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let plan = if dry_run {
                grants_file::plan(issuer.state(), &parsed, now()).await?
            } else {
                grants_file::apply(issuer.state(), &parsed, prune, now()).await?
            };
            for (sign, names) in [
                ("+", &plan.create),
                ("~", &plan.replace),
                ("-", &plan.remove),
            ] {
                for name in names {
                    let note = if sign == "-" && !prune {
                        " (kept: use --prune to revoke)"
                    } else {
                        ""
                    };
                    println!("{sign} {name}{note}");
                }
            }
            println!(
                "{} created, {} replaced, {} unchanged{}",
                plan.create.len(),
                plan.replace.len(),
                plan.unchanged.len(),
                if dry_run { " (dry run)" } else { "" }
            );
        }
        Command::Grants(GrantsCommand::WhoCan {
            storage,
            tool,
            args,
        }) => {
            let mut arguments = serde_json::json!({});
            for arg in &args {
                let Some((pointer, value)) = arg.split_once('=') else {
                    bail!("--arg {arg:?} is not POINTER=VALUE");
                };
                let value =
                    serde_json::from_str(value).unwrap_or_else(|_| serde_json::json!(value));
                set_pointer(&mut arguments, pointer, value)?;
            }
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            print_json(&grants_file::who_can(issuer.state(), &tool, &arguments, now()).await?)?;
        }
        Command::Grants(GrantsCommand::List { storage }) => {
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            print_json(&grants::list(&issuer.state().db).await?)?;
        }
        Command::Mint { storage, grant } => {
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let state = issuer.state();
            let Some(grant) = grants::get(&state.db, &grant).await? else {
                bail!("no grant {grant}");
            };
            if !grant.is_active(now()) {
                bail!("grant {} is revoked or expired", grant.id);
            }
            println!(
                "{}",
                grants::mint_subject_token(state, &grant, now()).await?
            );
        }
        Command::Keys(KeysCommand::List { storage }) => {
            let db = portcullis_issuer::open_database(&storage.options()?).await?;
            print_json(&keys::list(&db).await?)?;
        }
        Command::Keys(KeysCommand::Rotate { storage }) => {
            let options = storage.options()?;
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            let sealing = match &options.key_encryption_secret {
                Some(secret) => keys::KeyEncryption::from_secret(secret)?,
                None => keys::KeyEncryption::development(&options.data_dir)?,
            };
            let kid = keys::rotate(&issuer.state().db, &sealing, now()).await?;
            println!("{kid}");
        }
        Command::Keys(KeysCommand::Prune {
            storage,
            older_than,
        }) => {
            let config = IssuerConfig::new(&storage.issuer_url);
            let keep = older_than.unwrap_or(config.max_token_lifetime() + 60);
            if keep < 0 {
                bail!("--older-than must not be negative");
            }
            let db = portcullis_issuer::open_database(&storage.options()?).await?;
            let pruned = keys::prune(&db, now() - keep, now()).await?;
            print_json(&pruned)?;
        }
        Command::Revoke {
            storage,
            target,
            reason,
        } => {
            let config = IssuerConfig::new(&storage.issuer_url);
            let lifetime = config.max_token_lifetime();
            let issuer = storage.open(config).await?;
            let state = issuer.state();
            let (kind, value, token_expires_at) = revoke_target(state, target)?;
            let request = revocation::RevokeRequest {
                kind,
                value,
                reason,
                token_expires_at,
            };
            let entry = revocation::revoke(&state.db, &state.hub, request, lifetime, now()).await?;
            print_json(&entry)?;
        }
        Command::Show { storage, token } => {
            let token = read_arg(&token)?;
            let issuer = storage.open(IssuerConfig::new(&storage.issuer_url)).await?;
            for line in explain(issuer.state(), token.trim()).await? {
                println!("{line}");
            }
        }
        Command::Audit(AuditCommand::Verify { storage }) => {
            let db = portcullis_issuer::open_database(&storage.options()?).await?;
            let report = portcullis_issuer::audit::verify(&db).await?;
            match &report.first_break {
                None => println!("ok: {} events, head {}", report.events, report.head),
                Some(problem) => {
                    eprintln!("BROKEN after {} good events: {problem}", report.events);
                    return Err(anyhow::anyhow!("the audit chain is broken"));
                }
            }
        }
    }
    Ok(())
}
