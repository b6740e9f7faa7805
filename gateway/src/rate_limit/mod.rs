//! A grant's calls per rolling hour: counted in the shared store when one is configured, so
//! that a cap of N allows N calls across every replica, and by each replica otherwise.
//!
//! A token's `rate` caps the calls of its grant. Every token of one grant (the first agent's and
//! every sub-agent's) counts against one counter, and each call is held to the cap of the token
//! making it: a sub-agent with a tighter cap can use less, and no token can push the grant past
//! its own cap.
//!
//! While a configured store cannot answer, `shared_state.mode` decides: `lenient` counts on
//! this replica alone (counted in `portcullis_gateway_shared_store_fallbacks_total`), `strict`
//! answers [`Unavailable`] and the call is refused. Counts made alone are not carried into the
//! store afterwards: a lenient outage can let up to N times the cap through, which is what
//! lenient means.

mod local;
mod shared;

use std::sync::Arc;

use crate::config::SharedMode;
use crate::metrics;
use crate::shared_state::{SharedStore, StoreError};

use self::local::RateLimiter;

/// The shared store could not count a call, and strict mode refuses it uncounted.
#[derive(Debug, thiserror::Error)]
#[error("the rate cap cannot be checked: {0}")]
pub(crate) struct Unavailable(#[from] StoreError);

/// The rate caps of one gateway.
#[derive(Debug)]
pub(crate) struct RateCaps {
    local: RateLimiter,
    shared: Option<Arc<SharedStore>>,
}

impl RateCaps {
    /// Caps counted in `shared` when given, else by this replica.
    pub(crate) fn new(shared: Option<Arc<SharedStore>>) -> Self {
        Self {
            local: RateLimiter::default(),
            shared,
        }
    }

    /// Counts a call of `grant` if it stays within `per_hour`; returns whether it was counted.
    pub(crate) async fn try_acquire(
        &self,
        grant: &str,
        per_hour: u32,
        now: i64,
    ) -> Result<bool, Unavailable> {
        let Some(store) = &self.shared else {
            return Ok(self.local.try_acquire(grant, per_hour, now));
        };
        match shared::try_acquire(store, grant, per_hour, now).await {
            Ok(counted) => Ok(counted),
            Err(e) => match store.mode() {
                SharedMode::Lenient => {
                    metrics::shared_store_fallback("rate");
                    Ok(self.local.try_acquire(grant, per_hour, now))
                }
                SharedMode::Strict => Err(Unavailable(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_state::tests::unreachable;

    #[tokio::test]
    async fn a_lenient_gateway_counts_alone_while_the_store_is_unreachable() {
        let caps = RateCaps::new(Some(Arc::new(unreachable(SharedMode::Lenient))));
        let before = metrics::shared_store_fallbacks("rate");
        assert!(caps.try_acquire("g", 2, 0).await.unwrap());
        assert!(caps.try_acquire("g", 2, 0).await.unwrap());
        assert!(!caps.try_acquire("g", 2, 0).await.unwrap());
        assert_eq!(metrics::shared_store_fallbacks("rate") - before, 3);
    }

    #[tokio::test]
    async fn a_strict_gateway_refuses_what_it_cannot_count() {
        let caps = RateCaps::new(Some(Arc::new(unreachable(SharedMode::Strict))));
        assert!(caps.try_acquire("g", 2, 0).await.is_err());
        assert!(caps.try_acquire("g", 2, 0).await.is_err());
    }
}
