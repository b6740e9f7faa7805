//! `mint`, `show` and `revoke`: an operator's work with single tokens and what they stem from.

use anyhow::{Context, bail};
use clap::Args;
use portcullis_issuer::revocation::{self, RevokeRequest};
use portcullis_issuer::{Settings, explain, grants, now};
use portcullis_policy::RevocationKind;

use super::io::{print_json, read_arg};

#[derive(Debug, Args)]
pub(super) struct Mint {
    /// The grant id.
    #[arg(long)]
    grant: String,
}

impl Mint {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let issuer = settings.open().await?;
        let state = issuer.state();
        let Some(grant) = grants::get(&state.db, &self.grant).await? else {
            bail!("no grant {}", self.grant);
        };
        if !grant.is_active(now()) {
            bail!("grant {} is revoked or expired", grant.id);
        }
        println!(
            "{}",
            grants::mint_subject_token(state, &grant, now()).await?
        );
        Ok(())
    }
}

#[derive(Debug, Args)]
pub(super) struct Show {
    /// The token (a JWT), or @FILE.
    token: String,
}

impl Show {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let token = read_arg(&self.token)?;
        let issuer = settings.open().await?;
        for line in explain::explain(issuer.state(), token.trim(), now()).await? {
            println!("{line}");
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub(super) struct Revoke {
    #[command(flatten)]
    target: RevokeTarget,
    /// Why, for the audit log.
    #[arg(long, default_value = "revoked by an operator")]
    reason: String,
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
    /// One agent's branch of a grant, as GRANT_ID/AGENT: every token of the grant that agent
    /// appears in (it, and what it delegated onward); the rest of the grant stands.
    #[arg(long, value_name = "GRANT_ID/AGENT")]
    branch: Option<String>,
}

impl Revoke {
    pub(super) async fn run(self, settings: &Settings) -> anyhow::Result<()> {
        let lifetime = settings.config().max_token_lifetime();
        let issuer = settings.open().await?;
        let state = issuer.state();
        let now = now();
        let (target, reason) = (self.target, self.reason);
        let by = |kind, value| RevokeRequest {
            kind,
            value,
            reason: reason.clone(),
            token_expires_at: None,
        };
        let request = match target {
            RevokeTarget {
                token: Some(token), ..
            } => RevokeRequest::token(&state.keys(), &token, reason.clone(), now)
                .context("this token is not one of this issuer's")?,
            RevokeTarget { grant: Some(v), .. } => by(RevocationKind::Grant, v),
            RevokeTarget { agent: Some(v), .. } => by(RevocationKind::Agent, v),
            RevokeTarget { user: Some(v), .. } => by(RevocationKind::User, v),
            RevokeTarget {
                session: Some(v), ..
            } => by(RevocationKind::Session, v),
            RevokeTarget {
                branch: Some(v), ..
            } => by(RevocationKind::Branch, v),
            RevokeTarget { .. } => bail!("name what to revoke"),
        };
        let entry = revocation::revoke(&state.db, &state.hub, request, lifetime, now).await?;
        print_json(&entry)
    }
}
