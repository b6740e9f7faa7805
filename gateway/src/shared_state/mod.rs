//! The store a gateway's replicas share: Redis, reached over one multiplexed connection.
//!
//! What must hold across replicas lives here: a grant's calls in the rolling hour
//! (`rate_limit::shared`) and values that may be spent once ([`one_time`]). Redis rather than a
//! home-made protocol between replicas, because atomic scripts and expiring keys are exactly
//! what these need and every platform already runs one.
//!
//! The request path never waits long for it. Every command has the configured deadline
//! (100 ms by default) on top of the connection's own; after a failure the store is taken as
//! down for [`BACK_OFF`] without asking again, so an outage costs one deadline per second
//! rather than one per call, and then a single call probes it. What a caller does with
//! [`StoreError`] is its own decision (rate caps follow `shared_state.mode`; one-time values
//! always fail closed). A failure is logged at most once per [`WARN_EVERY`].
//!
//! The connection is made on first use, in the runtime of the caller: Pingora serves
//! requests in a runtime of its own, which the connection's background task must live in.

pub(crate) mod one_time;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::{SharedMode, SharedState};

/// How long the store is taken as down after a failure.
const BACK_OFF: Duration = Duration::from_secs(1);

/// How often an unreachable store is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why the shared store gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// No answer within the deadline.
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    /// Redis failed recently, and the back-off has not passed.
    #[error("Redis failed less than {BACK_OFF:?} ago")]
    BackingOff,
    /// Redis answered with an error, or the connection failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The in-process store of one-time values holds as many unexpired values as it may.
    #[error("{0} one-time values are held, the most kept in process")]
    Full(usize),
}

/// The shared store of one gateway.
pub(crate) struct SharedStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    mode: SharedMode,
    /// The origin of the two clocks below, in milliseconds.
    epoch: Instant,
    /// Until when the store is taken as down.
    down_until_ms: AtomicU64,
    /// When a failure was last logged (0: never).
    warned_at_ms: AtomicU64,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug would print the URL, which may hold a password.
        f.debug_struct("SharedStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// The store the section names; nothing is connected yet.
    pub(crate) fn new(settings: &SharedState) -> Self {
        Self {
            client: redis::Client::open(settings.redis_url.expose())
                .expect("the URL was parsed when the configuration was validated"),
            connection: OnceCell::new(),
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            mode: settings.mode,
            epoch: Instant::now(),
            down_until_ms: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
        }
    }

    /// What happens to rate-capped calls while the store cannot be reached.
    pub(crate) fn mode(&self) -> SharedMode {
        self.mode
    }

    /// The key `name` in this installation's space.
    pub(crate) fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `command` on the connection, within the deadline, unless the store failed less
    /// than [`BACK_OFF`] ago.
    pub(crate) async fn run<T, F>(&self, command: F) -> Result<T, StoreError>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    {
        if self.elapsed_ms() < self.down_until_ms.load(Ordering::Relaxed) {
            return Err(StoreError::BackingOff);
        }
        let attempt = async {
            let connection = self.connection().await?;
            // A clone shares the one multiplexed connection.
            command(&mut connection.clone()).await
        };
        let outcome = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => StoreError::Redis(e),
            Err(_) => StoreError::Timeout(self.timeout),
        };
        let back_off = u64::try_from(BACK_OFF.as_millis()).unwrap_or(u64::MAX);
        self.down_until_ms.store(
            self.elapsed_ms().saturating_add(back_off),
            Ordering::Relaxed,
        );
        self.warn(&outcome);
        Err(outcome)
    }

    async fn connection(&self) -> redis::RedisResult<&ConnectionManager> {
        self.connection
            .get_or_try_init(|| async {
                // One attempt per connection: the back-off above paces the retries, and
                // the manager reconnects by itself once a connection it had is lost.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await
    }

    /// Logs a failure, at most once per [`WARN_EVERY`].
    fn warn(&self, error: &StoreError) {
        let now = self.elapsed_ms().max(1);
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < every {
            return;
        }
        if self
            .warned_at_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let consequence = match self.mode {
            SharedMode::Lenient => "rate caps are counted by this replica alone meanwhile",
            SharedMode::Strict => "calls under a rate cap are refused meanwhile",
        };
        tracing::warn!("the shared store is unreachable ({error}): {consequence}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::secret::Secret;

    /// Redis on this machine (`PORTCULLIS_TEST_REDIS_URL`, by default 127.0.0.1:6379).
    pub(crate) fn redis_url() -> String {
        std::env::var("PORTCULLIS_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A key prefix no other test or run uses.
    pub(crate) fn random_prefix() -> String {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("random source");
        format!("portcullis-test:{:016x}:", u64::from_le_bytes(random))
    }

    /// A store on the test Redis, with keys under a prefix no other test or run uses; fails
    /// at once, with the reason, when Redis cannot be reached.
    pub(crate) async fn store(mode: SharedMode) -> SharedStore {
        store_at(mode, &random_prefix()).await
    }

    /// A store on the test Redis with keys under `prefix` (replicas configured alike).
    pub(crate) async fn store_at(mode: SharedMode, prefix: &str) -> SharedStore {
        let url = redis_url();
        let store = SharedStore::new(&SharedState {
            redis_url: Secret::new(url.clone()),
            mode,
            key_prefix: prefix.to_owned(),
            timeout: Duration::from_secs(2),
        });
        let ping = async |c: &mut ConnectionManager| redis::cmd("PING").query_async::<()>(c).await;
        if let Err(e) = store.run(ping).await {
            panic!("these tests need Redis at {url} (PORTCULLIS_TEST_REDIS_URL): {e}");
        }
        store
    }

    /// Deletes every key under the store's prefix.
    pub(crate) async fn clean(store: &SharedStore) {
        let pattern = format!("{}*", store.prefix);
        let keys: Vec<String> = store
            .run(async |c| redis::cmd("KEYS").arg(&pattern).query_async(c).await)
            .await
            .expect("listing the test's keys");
        if !keys.is_empty() {
            let del = async |c: &mut ConnectionManager| {
                redis::cmd("DEL").arg(&keys).query_async::<()>(c).await
            };
            store.run(del).await.expect("deleting the test's keys");
        }
    }

    /// A store pointed at a port nothing listens on.
    pub(crate) fn unreachable(mode: SharedMode) -> SharedStore {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = closed.local_addr().expect("its address").port();
        drop(closed);
        SharedStore::new(&SharedState {
            redis_url: Secret::new(format!("redis://127.0.0.1:{port}")),
            mode,
            key_prefix: "portcullis-test-unreachable:".into(),
            timeout: Duration::from_millis(100),
        })
    }

    #[tokio::test]
    async fn an_unreachable_store_fails_fast_and_then_backs_off() {
        let store = unreachable(SharedMode::Lenient);
        let ping = async |c: &mut ConnectionManager| redis::cmd("PING").query_async::<()>(c).await;
        let started = Instant::now();
        let first = store.run(ping).await.unwrap_err();
        assert!(
            matches!(first, StoreError::Redis(_) | StoreError::Timeout(_)),
            "{first:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let second = store.run(ping).await.unwrap_err();
        assert!(matches!(second, StoreError::BackingOff), "{second:?}");
    }

    #[test]
    fn the_store_never_prints_its_url() {
        let store = SharedStore::new(&SharedState {
            redis_url: Secret::new("redis://:hunter2@127.0.0.1:6379".into()),
            mode: SharedMode::Strict,
            key_prefix: "p:".into(),
            timeout: Duration::from_millis(50),
        });
        assert!(!format!("{store:?}").contains("hunter2"));
    }
}
