//! The issuer's public keys, fetched from its JWKS and held in an `ArcSwap`.
//!
//! Request handlers read the current [`Verifier`] without a lock. A token signed with a key we
//! have not seen triggers one refresh (a key rotation at the issuer), rate-limited so a flood of
//! tokens with made-up `kid`s cannot turn the gateway into a load generator against the issuer.
//! A background task also refreshes periodically, so retired keys eventually drop out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portcullis_policy::{JwkSet, KeySet, Verifier};

/// The least time between two fetches triggered by unknown `kid`s.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(2);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why a JWKS fetch failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// Transport failure or non-2xx status.
    #[error("fetching {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The document is too large or not a JWKS.
    #[error("{url} is not a usable JWKS: {reason}")]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// The issuer's keys and how to refresh them.
#[derive(Debug)]
pub(crate) struct IssuerKeys {
    issuer: String,
    jwks_url: String,
    leeway: i64,
    current: ArcSwap<Verifier>,
    loaded: std::sync::atomic::AtomicBool,
    version: std::sync::atomic::AtomicU64,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl IssuerKeys {
    /// An empty key set for `issuer`, to be filled by [`IssuerKeys::refresh`].
    pub(crate) fn new(issuer: String, jwks_url: String, leeway: i64) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // Pingora runs several tokio runtimes; a pooled connection made on one must not be
            // reused from another, so do not pool at all (fetches are rare).
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with static settings builds");
        let empty = Verifier::new(issuer.clone(), KeySet::default()).with_leeway(leeway);
        Self {
            issuer,
            jwks_url,
            leeway,
            current: ArcSwap::from_pointee(empty),
            loaded: false.into(),
            version: 0.into(),
            last_fetch: tokio::sync::Mutex::new(None),
            http,
        }
    }

    /// The current verifier.
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        self.current.load_full()
    }

    /// Changes whenever a key set is installed (what cached verifications depend on).
    pub(crate) fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether keys have been loaded at least once.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Fetches the JWKS now and installs it.
    pub(crate) async fn refresh(&self) -> Result<usize, FetchError> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_install().await
    }

    /// Fetches the JWKS unless another fetch happened very recently. Returns whether the key
    /// set may have changed (so a caller retries its verification).
    pub(crate) async fn refresh_for_unknown_kid(&self) -> bool {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
            // A concurrent request may just have fetched the key we need.
            return true;
        }
        *last = Some(Instant::now());
        match self.fetch_and_install().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("JWKS refresh failed: {e}");
                false
            }
        }
    }

    async fn fetch_and_install(&self) -> Result<usize, FetchError> {
        let url = &self.jwks_url;
        let http = |source| FetchError::Http {
            url: url.clone(),
            source,
        };
        let invalid = |reason: String| FetchError::Invalid {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(http)?;
        if response
            .content_length()
            .is_some_and(|l| l > MAX_JWKS_BYTES as u64)
        {
            return Err(invalid("larger than 256 KiB".into()));
        }
        let bytes = response.bytes().await.map_err(http)?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(invalid("larger than 256 KiB".into()));
        }
        let jwks: JwkSet = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let keys = KeySet::from_jwks(&jwks).map_err(|e| invalid(e.to_string()))?;
        let count = keys.len();
        self.current.store(Arc::new(
            Verifier::new(self.issuer.clone(), keys).with_leeway(self.leeway),
        ));
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        crate::metrics::jwks_refreshed();
        Ok(count)
    }
}
