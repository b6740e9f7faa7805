//! A grant's rolling hour in Redis: the arithmetic of `local.rs` in one Lua script, so that
//! reading the counts, judging the call and counting it are one atomic step for every replica
//! and one round trip (`EVALSHA`; the script is loaded again if Redis restarted).
//!
//! One hash per grant holds what `local::Counter` holds (`start`, `current`, `previous`) and
//! expires two windows after its last count. The time is the gateway's, as for token
//! lifetimes: replicas whose clocks disagree by seconds move into the next hour seconds
//! apart, and a replica behind never rolls the window back.

use std::sync::LazyLock;

use super::local::WINDOW;
use crate::shared_state::{SharedStore, StoreError};

/// KEYS[1]: the grant's hash. ARGV: now, cap, window (seconds). Returns 1 if counted.
const SCRIPT: &str = r"
local now, cap, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = now - now % window
local kept = redis.call('HMGET', KEYS[1], 'start', 'current', 'previous')
local kept_start = tonumber(kept[1]) or start
local current, previous = tonumber(kept[2]) or 0, tonumber(kept[3]) or 0
if start > kept_start then
  if start - kept_start == window then previous = current else previous = 0 end
  current = 0
else
  start = kept_start
end
local into = math.max(now - start, 0) / window
if previous * (1 - into) + current + 1 > cap then
  return 0
end
redis.call('HSET', KEYS[1], 'start', start, 'current', current + 1, 'previous', previous)
redis.call('EXPIRE', KEYS[1], 2 * window)
return 1
";

static ROLLING_HOUR: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(SCRIPT));

/// Counts a call of `grant` in the shared window if it stays within `per_hour`; returns
/// whether it was counted.
pub(super) async fn try_acquire(
    store: &SharedStore,
    grant: &str,
    per_hour: u32,
    now: i64,
) -> Result<bool, StoreError> {
    let key = store.key("rate", grant);
    let mut invocation = ROLLING_HOUR.key(&key);
    invocation.arg(now).arg(per_hour).arg(WINDOW);
    let counted: i64 = store
        .run(async |c| invocation.invoke_async(c).await)
        .await?;
    Ok(counted == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SharedMode;
    use crate::shared_state::tests::{clean, random_prefix, store, store_at};

    #[tokio::test]
    async fn calls_beyond_the_cap_are_refused_whichever_replica_counts_them() {
        let shared = store(SharedMode::Strict).await;
        for i in 0..3 {
            assert!(try_acquire(&shared, "g1", 3, 7_200 + i).await.unwrap());
        }
        assert!(!try_acquire(&shared, "g1", 3, 7_300).await.unwrap());
        assert!(
            try_acquire(&shared, "g2", 3, 7_300).await.unwrap(),
            "grants are counted apart"
        );
        clean(&shared).await;
    }

    #[tokio::test]
    async fn a_tighter_cap_on_the_same_grant_is_held_to_the_shared_count() {
        let shared = store(SharedMode::Strict).await;
        assert!(try_acquire(&shared, "g", 100, 0).await.unwrap());
        assert!(try_acquire(&shared, "g", 100, 0).await.unwrap());
        assert!(!try_acquire(&shared, "g", 2, 0).await.unwrap());
        assert!(try_acquire(&shared, "g", 100, 0).await.unwrap());
        clean(&shared).await;
    }

    #[tokio::test]
    async fn the_previous_hour_fades_out_of_the_shared_rolling_window() {
        let shared = store(SharedMode::Strict).await;
        for _ in 0..10 {
            assert!(try_acquire(&shared, "g", 10, 3_599).await.unwrap());
        }
        assert!(!try_acquire(&shared, "g", 10, 3_660).await.unwrap());
        for _ in 0..7 {
            assert!(try_acquire(&shared, "g", 10, 6_300).await.unwrap());
        }
        assert!(!try_acquire(&shared, "g", 10, 6_300).await.unwrap());
        // A replica whose clock is still in the previous hour does not roll the window back.
        assert!(!try_acquire(&shared, "g", 10, 3_500).await.unwrap());
        clean(&shared).await;
    }

    #[tokio::test]
    async fn concurrent_calls_on_many_connections_never_exceed_the_cap() {
        // Four connections to one key space, as four gateways configured alike have.
        let prefix = random_prefix();
        let mut replicas = Vec::new();
        for _ in 0..4 {
            replicas.push(std::sync::Arc::new(
                store_at(SharedMode::Strict, &prefix).await,
            ));
        }
        let calls = (0..40).map(|i| {
            let replica = replicas[i % replicas.len()].clone();
            tokio::spawn(async move { try_acquire(&replica, "g", 25, 100).await })
        });
        let mut counted = 0;
        for call in calls {
            counted += usize::from(call.await.unwrap().unwrap());
        }
        assert_eq!(counted, 25);
        clean(&replicas[0]).await;
    }
}
