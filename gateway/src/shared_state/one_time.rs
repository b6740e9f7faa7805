//! Values that may be spent once: a DPoP proof's `jti`, an approval. A replayed value is
//! refused however many replicas serve the gateway, for as long as the value could be
//! presented at all (its TTL: the proof's or the approval's own lifetime).
//!
//! With a shared store a value is spent by `SET key 1 NX PX ttl`: one atomic command, so two
//! replicas racing on one value cannot both win. Without one it is spent in this process,
//! which is exact for a single replica. A store that cannot answer is an error, never a
//! success: the caller refuses what it could not spend (fail closed), whatever
//! `shared_state.mode` says about rate caps, since a replay is worse than a refusal here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{SharedStore, StoreError};

/// Spent values kept in process before the expired ones are first swept; after a sweep, the
/// next waits until the table has doubled, so sweeping costs O(1) per value spent however
/// many are live.
const SWEEP_ABOVE: usize = 10_000;
/// Unexpired values kept in process at most: beyond, nothing more is spent (fail closed), so
/// a flood of unique values cannot grow memory without bound.
const MAX_IN_PROCESS: usize = 1_000_000;

/// One kind of one-time value (`dpop`, `approval`): its own key space.
#[derive(Debug)]
pub(crate) struct OneTime {
    kind: &'static str,
    place: Place,
}

#[derive(Debug)]
enum Place {
    /// Spent values and when each may be spent again.
    InProcess(Mutex<InProcess>),
    /// The replicas' store.
    Shared(Arc<SharedStore>),
}

/// The in-process table and the size at which it is next swept.
#[derive(Debug)]
struct InProcess {
    spent: HashMap<String, Instant>,
    sweep_at: usize,
}

impl Default for InProcess {
    fn default() -> Self {
        Self {
            spent: HashMap::new(),
            sweep_at: SWEEP_ABOVE,
        }
    }
}

impl InProcess {
    fn spend(&mut self, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        if self.spent.len() >= self.sweep_at {
            self.spent.retain(|_, until| *until > now);
            if self.spent.len() >= MAX_IN_PROCESS {
                return Err(StoreError::Full(MAX_IN_PROCESS));
            }
            self.sweep_at = (2 * self.spent.len()).clamp(SWEEP_ABOVE, MAX_IN_PROCESS);
        }
        match self.spent.get(value) {
            Some(until) if *until > now => Ok(false),
            _ => {
                self.spent.insert(value.to_owned(), now + ttl);
                Ok(true)
            }
        }
    }
}

impl OneTime {
    /// Values of `kind`, spent in `store` when there is one, else in this process.
    pub(crate) fn new(kind: &'static str, store: Option<Arc<SharedStore>>) -> Self {
        let place = match store {
            Some(store) => Place::Shared(store),
            None => Place::InProcess(Mutex::default()),
        };
        Self { kind, place }
    }

    /// Spends `value` for `ttl`: `Ok(true)` the first time within the TTL, `Ok(false)` for
    /// every later attempt, on any replica. `ttl` is rounded up to a whole millisecond.
    pub(crate) async fn spend(&self, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        match &self.place {
            Place::InProcess(table) => table
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .spend(value, ttl),
            Place::Shared(store) => {
                let key = store.key(self.kind, value);
                let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let set = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .to_owned();
                // `OK` when this call set it, nil when it was there already.
                let answer: Option<String> = store.run(async |c| set.query_async(c).await).await?;
                Ok(answer.is_some())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{clean, store, unreachable};
    use super::*;
    use crate::config::SharedMode;

    #[tokio::test]
    async fn a_value_is_spent_once_across_replicas_sharing_redis() {
        let shared = Arc::new(store(SharedMode::Strict).await);
        let replica_a = OneTime::new("dpop", Some(shared.clone()));
        let replica_b = OneTime::new("dpop", Some(shared.clone()));
        let ttl = Duration::from_secs(60);
        assert!(replica_a.spend("jti-1", ttl).await.unwrap());
        assert!(!replica_b.spend("jti-1", ttl).await.unwrap());
        assert!(!replica_a.spend("jti-1", ttl).await.unwrap());
        assert!(replica_b.spend("jti-2", ttl).await.unwrap());
        let approvals = OneTime::new("approval", Some(shared.clone()));
        assert!(
            approvals.spend("jti-1", ttl).await.unwrap(),
            "each kind has its own key space"
        );
        clean(&shared).await;
    }

    #[tokio::test]
    async fn racing_replicas_spend_a_value_exactly_once() {
        let shared = Arc::new(store(SharedMode::Strict).await);
        let replicas: Vec<_> = (0..8)
            .map(|_| Arc::new(OneTime::new("approval", Some(shared.clone()))))
            .collect();
        let spends = replicas.iter().map(|replica| {
            let replica = replica.clone();
            tokio::spawn(async move { replica.spend("ap-1", Duration::from_secs(60)).await })
        });
        let mut won = 0;
        for spend in spends {
            won += usize::from(spend.await.unwrap().unwrap());
        }
        assert_eq!(won, 1);
        clean(&shared).await;
    }

    #[tokio::test]
    async fn a_value_can_be_spent_again_once_its_ttl_has_passed() {
        let shared = Arc::new(store(SharedMode::Strict).await);
        for one_time in [
            OneTime::new("dpop", Some(shared.clone())),
            OneTime::new("dpop", None),
        ] {
            let ttl = Duration::from_millis(50);
            assert!(one_time.spend("jti", ttl).await.unwrap());
            assert!(!one_time.spend("jti", ttl).await.unwrap());
            tokio::time::sleep(Duration::from_millis(120)).await;
            assert!(one_time.spend("jti", ttl).await.unwrap(), "{one_time:?}");
        }
        clean(&shared).await;
    }

    #[tokio::test]
    async fn an_unreachable_store_is_an_error_never_a_first_spend() {
        let one_time = OneTime::new("dpop", Some(Arc::new(unreachable(SharedMode::Lenient))));
        assert!(
            one_time
                .spend("jti", Duration::from_secs(60))
                .await
                .is_err()
        );
        assert!(
            one_time
                .spend("jti", Duration::from_secs(60))
                .await
                .is_err()
        );
    }

    #[test]
    fn a_flood_of_unique_values_is_bounded_and_refused_beyond_the_bound() {
        let mut table = InProcess::default();
        let ttl = Duration::from_secs(60);
        for i in 0..MAX_IN_PROCESS {
            assert!(table.spend(&i.to_string(), ttl).unwrap());
        }
        assert!(matches!(
            table.spend("one more", ttl),
            Err(StoreError::Full(MAX_IN_PROCESS))
        ));
        assert_eq!(table.spent.len(), MAX_IN_PROCESS);
        // Once they expire, spending works again.
        let mut table = InProcess::default();
        for i in 0..2 * SWEEP_ABOVE {
            assert!(table.spend(&i.to_string(), Duration::ZERO).unwrap());
        }
        assert!(
            table.spent.len() <= SWEEP_ABOVE * 2,
            "{}",
            table.spent.len()
        );
        assert!(table.spend("after", ttl).unwrap());
        assert!(!table.spend("after", ttl).unwrap());
    }
}
