//! The command line: the clap schema of every command, a file per command group, and the one
//! [`Settings`] they all read.
//!
//! The settings (data directory, database, issuer URL, token lifetimes) are global flags, each
//! also a `PORTCULLIS_*` variable: `serve` and an operator's `revoke` or `keys prune` compute
//! from the same values when the operator sets them once. Each command body is a few calls
//! into the library; what a command knows beyond parsing its arguments and printing its answer
//! belongs in the library.
//!
//! | file | commands |
//! |---|---|
//! | `serve` | `serve` |
//! | `users`, `clients`, `grants` | `users …`, `clients …`, `grants …` |
//! | `tokens` | `mint`, `show`, `revoke` |
//! | `keys` | `keys …` |
//! | `audit` | `audit verify`, `audit query` |
//! | `freezes`, `revocations` | `freezes …`, `revocations list` |
//! | `io` | JSON on stdout, `@FILE` arguments |

mod audit;
mod clients;
mod freezes;
mod grants;
mod io;
mod keys;
mod maintenance;
mod revocations;
mod serve;
mod tokens;
mod upstreams;
mod users;

use clap::{Parser, Subcommand};
use portcullis_issuer::Settings;

/// The Portcullis issuer: RFC 8693 token exchange that turns a user's grant into short-lived,
/// attenuated delegation tokens for AI agents.
#[derive(Debug, Parser)]
#[command(name = "portcullis-issuer", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (token endpoint, JWKS, metadata, admin API).
    Serve(serve::Serve),
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Create and list people who sign in at the issuer and consent for agents.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Register and list agents (OAuth clients).
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Create and list grants.
    #[command(subcommand)]
    Grants(grants::GrantsCommand),
    /// Print a user's subject token for a grant (the subject_token of a first exchange).
    Mint(tokens::Mint),
    /// Inspect, rotate and prune signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Revoke a token, a grant (and every token delegated from it), one sub-agent's branch of a
    /// grant, an agent, a user, or an MCP session. Committed before this command returns; running issuers push it to gateways.
    Revoke(tokens::Revoke),
    /// List the revocation log.
    #[command(subcommand)]
    Revocations(revocations::RevocationsCommand),
    /// Set, lift and list change freezes (tools every gateway refuses until lifted).
    #[command(subcommand)]
    Freezes(freezes::FreezesCommand),
    /// Register upstreams with an authorization server of their own, where people link their
    /// accounts.
    #[command(subcommand)]
    Upstreams(upstreams::UpstreamsCommand),
    /// Decode a token and explain its authority in plain words (verified against this issuer's keys).
    Show(tokens::Show),
    /// Work with the hash-chained audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Keep the database to what is in force (retention).
    #[command(subcommand)]
    Maintenance(maintenance::MaintenanceCommand),
}

impl Cli {
    /// Runs the command.
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let settings = &self.settings;
        match self.command {
            Command::Serve(serve) => serve.run(settings).await,
            Command::Migrate => {
                settings.open_database().await?.migrate().await?;
                eprintln!("database is up to date");
                Ok(())
            }
            Command::Users(command) => command.run(settings).await,
            Command::Clients(command) => command.run(settings).await,
            Command::Grants(command) => command.run(settings).await,
            Command::Mint(mint) => mint.run(settings).await,
            Command::Keys(command) => command.run(settings).await,
            Command::Revoke(revoke) => revoke.run(settings).await,
            Command::Show(show) => show.run(settings).await,
            Command::Revocations(command) => command.run(settings).await,
            Command::Freezes(command) => command.run(settings).await,
            Command::Upstreams(command) => command.run(settings).await,
            Command::Audit(command) => command.run(settings).await,
            Command::Maintenance(command) => command.run(settings).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_schema_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_shared_settings_are_read_after_any_command() {
        let cli = Cli::try_parse_from([
            "portcullis-issuer",
            "revoke",
            "--agent",
            "a",
            "--delegation-ttl",
            "7200",
        ])
        .unwrap();
        assert_eq!(cli.settings.delegation_ttl, 7200);
        assert_eq!(cli.settings.config().max_token_lifetime(), 7200);
    }

    #[test]
    fn a_lifetime_must_be_positive() {
        let parsed = Cli::try_parse_from(["portcullis-issuer", "serve", "--delegation-ttl", "0"]);
        assert_eq!(
            parsed.unwrap_err().kind(),
            clap::error::ErrorKind::ValueValidation
        );
    }
}
