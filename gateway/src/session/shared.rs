//! Sessions in the replicas' shared store: one key per live session, and one hash of a fleet
//! session's member sessions.
//!
//! The key `session:{handle}` exists while the session lives. It is set when the session
//! opens and its expiry pushed back by every use (`EXPIRE` answers whether it still exists:
//! one round trip says live-or-not and marks the use), so idle expiry holds across replicas;
//! ending a session deletes it. `session-members:{handle}` maps each fleet member to the
//! upstream session opened there; the first replica to bind one wins (`HSETNX`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::shared_state::{SharedStore, StoreError};

/// KEYS[1]: the members hash. ARGV: member, upstream session id, TTL in seconds. Returns
/// `{1, id}` if bound now, `{0, id}` with the id bound first.
const BIND: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {1, ARGV[2]}
end
return {0, redis.call('HGET', KEYS[1], ARGV[1])}
";

static BIND_MEMBER: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(BIND));

/// Sessions in the shared store.
#[derive(Debug)]
pub(super) struct SharedSessions {
    pub(super) store: Arc<SharedStore>,
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs().max(1)).unwrap_or(i64::MAX)
}

impl SharedSessions {
    fn live_key(&self, handle: &str) -> String {
        self.store.key("session", handle)
    }

    fn members_key(&self, handle: &str) -> String {
        self.store.key("session-members", handle)
    }

    /// Records a session that opened, live for `idle`.
    pub(super) async fn open(&self, handle: &str, idle: Duration) -> Result<(), StoreError> {
        let key = self.live_key(handle);
        self.store
            .run(async |c| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("EX")
                    .arg(seconds(idle))
                    .query_async(c)
                    .await
            })
            .await
    }

    /// Whether the session lives; if so, it lives `idle` from now.
    pub(super) async fn touch(&self, handle: &str, idle: Duration) -> Result<bool, StoreError> {
        let key = self.live_key(handle);
        let pushed: i64 = self
            .store
            .run(async |c| {
                redis::cmd("EXPIRE")
                    .arg(&key)
                    .arg(seconds(idle))
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(pushed == 1)
    }

    /// Ends the session everywhere; returns its member sessions.
    pub(super) async fn end(&self, handle: &str) -> Result<Vec<(String, String)>, StoreError> {
        let (live, members) = (self.live_key(handle), self.members_key(handle));
        self.store
            .run(async |c| {
                redis::pipe()
                    .atomic()
                    .hgetall(&members)
                    .del(&[&live, &members])
                    .ignore()
                    .query_async(c)
                    .await
                    .map(|(bound,): (Vec<(String, String)>,)| bound)
            })
            .await
    }

    /// The upstream session bound at `member`.
    pub(super) async fn member(
        &self,
        handle: &str,
        member: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = self.members_key(handle);
        self.store
            .run(async |c| {
                redis::cmd("HGET")
                    .arg(&key)
                    .arg(member)
                    .query_async(c)
                    .await
            })
            .await
    }

    /// Binds `upstream_id` at `member` unless another replica bound one first; returns the id
    /// kept and whether it is `upstream_id`.
    pub(super) async fn bind_member(
        &self,
        handle: &str,
        member: &str,
        upstream_id: &str,
        lifetime: Duration,
    ) -> Result<(String, bool), StoreError> {
        let key = self.members_key(handle);
        let mut invocation = BIND_MEMBER.key(&key);
        invocation
            .arg(member)
            .arg(upstream_id)
            .arg(seconds(lifetime));
        let (bound, kept): (i64, String) = self
            .store
            .run(async |c| invocation.invoke_async(c).await)
            .await?;
        Ok((kept, bound == 1))
    }
}
