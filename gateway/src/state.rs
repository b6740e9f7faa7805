//! What every request and background service of one gateway shares, built once at start by
//! [`GatewayState::prepare`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::approvals::Approvals;
use crate::body_buffer::{self, BodyBuffer};
use crate::config::{Config, Settings};
use crate::controls::Controls;
use crate::decision_log::{self, DecisionLog, DecisionWriter};
use crate::drain::InFlight;
use crate::fleet::stateless::StatelessMembers;
use crate::issuer_keys::IssuerKeys;
use crate::kill::{self, Canceller, Revocations};
use crate::pins::Pins;
use crate::rate_limit::RateCaps;
use crate::routes::Routes;
use crate::session::Sessions;
use crate::shared_state::SharedStore;
use crate::shared_state::one_time::OneTime;
use portcullis_policy::dpop::NonceSource;

/// How long one DPoP nonce is handed out; it is accepted for one window more.
const NONCE_WINDOW_SECONDS: i64 = 60;
use crate::token_cache::TokenCache;
use crate::upstream::Credentials;
use crate::upstream::downstream_token::DownstreamMinter;
use crate::upstream::person_token::PersonTokens;
use crate::{StartError, clock};

/// What the proxy, the admin listener and the background services share.
#[derive(Debug)]
pub struct GatewayState {
    /// The settings fixed at start.
    pub(crate) settings: Settings,
    /// The issuer's keys.
    pub(crate) keys: Arc<IssuerKeys>,
    /// Revocation knowledge and live work.
    pub(crate) revocations: Arc<Revocations>,
    /// Local kills and change freezes.
    pub(crate) controls: Arc<Controls>,
    /// Upstreams, fleets, their discovery documents and accepted `Host`/`Origin` values: the
    /// one live copy, replaced on a reload.
    pub(crate) routes: ArcSwap<Routes>,
    /// MCP sessions: sealed ids any replica with the keys reads, and what they cannot carry.
    pub(crate) sessions: Sessions,
    /// Which fleet members speak the stateless revision.
    pub(crate) stateless_members: StatelessMembers,
    /// Tokens already verified.
    pub(crate) token_cache: TokenCache,
    /// DPoP proof ids seen within the proof window: across replicas with a shared store.
    pub(crate) dpop_proofs: OneTime,
    /// The nonces DPoP proofs must carry, when `dpop_nonces` is on.
    pub(crate) dpop_nonces: Option<NonceSource>,
    /// Calls per hour, per grant: across replicas with a shared store, else per replica.
    pub(crate) rate_caps: RateCaps,
    /// Where calls that need a person's approval are asked about.
    pub(crate) approvals: Approvals,
    /// For requests the gateway makes itself (cancellations, fleet members).
    pub(crate) http: reqwest::Client,
    /// The downstream token signer.
    pub(crate) credentials: Credentials,
    /// Tells upstreams to stop killed work.
    pub(crate) canceller: Canceller,
    /// The gateway's JWKS document, served at `/.well-known/jwks.json`.
    pub(crate) jwks_document: Bytes,
    /// Pinned tool definitions, if pinning is on.
    pub(crate) pins: Option<Pins>,
    /// Where allow and deny decisions are logged, if configured.
    pub(crate) decisions: Option<DecisionLog>,
    /// Writes and ships the decision log (run by a background service).
    pub(crate) decision_writer: Option<DecisionWriter>,
    /// Requests in flight, for a shutdown that waits for them and no longer.
    pub(crate) in_flight: Arc<InFlight>,
    /// Room for the large request bodies held at once.
    pub(crate) body_buffer: BodyBuffer,
}

impl GatewayState {
    /// Builds the shared state: the issuer's keys and revocations (fetched once now; a failure
    /// is logged and retried in the background) and the downstream signer.
    pub fn prepare(config: Config) -> Result<Arc<Self>, StartError> {
        let Config { settings, routes } = config;
        let keys = Arc::new(IssuerKeys::new(
            settings.issuer.clone(),
            settings.jwks_url.clone(),
            settings.leeway_seconds,
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        match runtime.block_on(keys.refresh()) {
            Ok(count) => tracing::info!("loaded {count} issuer key(s) from {}", settings.jwks_url),
            Err(e) => {
                tracing::warn!("issuer keys not loaded yet (retrying in the background): {e}")
            }
        }
        let revocations =
            Revocations::new(settings.revocation_mode, settings.max_staleness_seconds);
        let initial = kill::poll_feed(
            &revocations,
            &keys,
            &settings.revocation_sources,
            clock::now,
        );
        match runtime.block_on(initial) {
            Ok(_) => tracing::info!("revocations loaded up to {}", revocations.version()),
            Err(e) => {
                tracing::warn!("revocations not loaded yet (retrying in the background): {e}")
            }
        }
        warn_about_settings(&settings);
        let minter = Arc::new(DownstreamMinter::new(
            settings.public_url.clone(),
            settings.downstream_token_ttl_seconds,
            settings.signing_key_file.as_deref(),
        )?);
        let jwks_document =
            Bytes::from(serde_json::to_vec(&minter.jwks()).expect("a JWKS serialises"));
        let credentials = Credentials {
            minter,
            people: Arc::new(PersonTokens::new(settings.approvals.clone())),
        };
        let (decisions, decision_writer) = match &settings.audit {
            Some(audit) => {
                let (log, writer) = decision_log::open(audit.clone()).map_err(|source| {
                    StartError::DecisionLog {
                        dir: audit.dir.display().to_string(),
                        source,
                    }
                })?;
                (Some(log), Some(writer))
            }
            None => (None, None),
        };
        let pins = settings.pins_file.clone().map(Pins::open).transpose()?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a reqwest client with static settings builds");
        let store = settings
            .shared_state
            .as_ref()
            .map(|shared| Arc::new(SharedStore::new(shared)));
        let sessions = Sessions::new(&settings.sessions, store.clone());
        Ok(Arc::new(Self {
            pins,
            decisions,
            decision_writer,
            controls: Controls::new(settings.admin_token.as_ref().map(|t| t.expose())),
            routes: ArcSwap::from_pointee(Routes::new(routes, &settings)),
            dpop_nonces: settings
                .dpop_nonces
                .then(|| NonceSource::new(sessions.nonce_key(), NONCE_WINDOW_SECONDS)),
            sessions,
            in_flight: Arc::default(),
            body_buffer: BodyBuffer::new(settings.body_buffer_bytes, body_buffer::WAIT),
            stateless_members: StatelessMembers::default(),
            dpop_proofs: OneTime::new("dpop", store.clone()),
            rate_caps: RateCaps::new(store),
            approvals: Approvals::new(settings.approvals.clone()),
            token_cache: TokenCache::new(settings.token_cache_size, settings.leeway_seconds),
            keys,
            revocations,
            canceller: Canceller::new(http.clone(), credentials.clone()),
            credentials,
            jwks_document,
            http,
            settings,
        }))
    }
}

/// Says at start what an operator may not have meant.
fn warn_about_settings(settings: &Settings) {
    let jwks_url = &settings.jwks_url;
    if jwks_url.starts_with("http://")
        && !["http://127.", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| jwks_url.starts_with(p))
    {
        tracing::warn!(
            "the issuer's JWKS is fetched over plain HTTP from {jwks_url}: anyone on that path \
             can substitute signing keys; use https outside loopback"
        );
    }
    match &settings.shared_state {
        Some(shared) => tracing::info!(
            "rate caps are counted across replicas in Redis ({:?} mode while it cannot be \
             reached)",
            shared.mode
        ),
        None => tracing::info!(
            "rate caps are counted by this replica alone; set shared_state when several \
             replicas serve one address"
        ),
    }
    if settings.signing_key_file.is_none() {
        tracing::info!(
            "downstream tokens are signed with a key generated at start; set signing_key_file \
             when several replicas serve one address"
        );
    }
}
