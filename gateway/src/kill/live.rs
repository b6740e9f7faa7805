//! Live work: every request that holds an upstream connection, registered with its token and
//! the raw socket so a revocation can end it where it runs.
//!
//! Killing shuts the socket's read side: the upstream response ends at once and Pingora fails
//! it (see `proxy`'s `fail_to_proxy`). A registration is removed when its response ends, before
//! Pingora can return the connection to its pool, and the socket is forgotten under the same
//! lock a kill takes, so a kill never touches a socket that serves someone else.

use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use portcullis_policy::VerifiedToken;
use portcullis_policy::revocation::{RevocationEntry, RevokedSet};

use crate::upstream::Upstream;

/// A live request with an upstream connection.
#[derive(Debug)]
pub(crate) struct LiveWork {
    token: Arc<VerifiedToken>,
    session_id: Option<String>,
    fd: Mutex<Option<RawFd>>,
    killed_by: AtomicI64,
    /// Where the work runs upstream, to cancel it there when killed.
    pub upstream: UpstreamWork,
}

/// What the upstream must be told when work is killed: cancel the request (if it is one) and
/// end the MCP session.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamWork {
    /// The upstream, as configured when the work started.
    pub upstream: Arc<Upstream>,
    /// The JSON-RPC id of an in-flight request (`notifications/cancelled` names it).
    pub request_id: Option<serde_json::Value>,
    /// The client's `MCP-Protocol-Version`, repeated on what the gateway sends.
    pub protocol_version: Option<String>,
    /// The upstream's own id of the MCP session.
    pub session_id: Option<String>,
}

impl LiveWork {
    /// Live work under `token` on upstream socket `fd`.
    pub(crate) fn new(
        token: Arc<VerifiedToken>,
        session_id: Option<String>,
        fd: RawFd,
        upstream: UpstreamWork,
    ) -> Self {
        Self {
            token,
            session_id,
            fd: Mutex::new(Some(fd)),
            killed_by: AtomicI64::new(0),
            upstream,
        }
    }

    /// The sequence number of the revocation that killed this work, if any.
    pub(crate) fn killed_by(&self) -> Option<i64> {
        match self.killed_by.load(Ordering::Acquire) {
            0 => None,
            seq => Some(seq),
        }
    }

    /// The token the work runs under.
    pub(crate) fn token(&self) -> &VerifiedToken {
        &self.token
    }

    /// The MCP session it belongs to.
    pub(crate) fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    fn fd(&self) -> MutexGuard<'_, Option<RawFd>> {
        self.fd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn kill(&self, seq: i64) {
        self.killed_by.store(seq, Ordering::Release);
        if let Some(fd) = self.fd().take() {
            // The fd is still the upstream connection of this request: registrations are
            // removed, under this same lock, before the connection can be reused. Shutting the
            // read side is enough to end the response here, costs no round of the peer's TCP
            // teardown inside this loop (a thousand of those took ~12 ms on loopback), and the
            // upstream hears of it through the cancellation and the session's DELETE.
            if let Err(e) = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Read) {
                tracing::debug!("shutting down a revoked upstream connection: {e}");
            }
        }
    }
}

/// Removes its work from the registry when dropped, and first forgets the socket.
#[derive(Debug)]
pub(crate) struct LiveGuard {
    id: u64,
    work: Arc<LiveWork>,
    registry: Arc<LiveRegistry>,
}

impl LiveGuard {
    /// The registered work.
    pub(crate) fn work(&self) -> &LiveWork {
        &self.work
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.work.fd().take();
        self.registry.map().remove(&self.id);
    }
}

/// Every piece of live work of one gateway.
#[derive(Debug, Default)]
pub(super) struct LiveRegistry {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<LiveWork>>>,
}

impl LiveRegistry {
    fn map(&self) -> MutexGuard<'_, HashMap<u64, Arc<LiveWork>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `work`; it stays until the guard is dropped.
    pub(super) fn insert(self: &Arc<Self>, work: LiveWork) -> LiveGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let work = Arc::new(work);
        self.map().insert(id, work.clone());
        LiveGuard {
            id,
            work,
            registry: self.clone(),
        }
    }

    /// Kills the work `entry` covers that is still running, and returns it.
    pub(super) fn kill_covered(&self, entry: &RevocationEntry) -> Vec<Arc<LiveWork>> {
        let mut single = RevokedSet::new();
        single.insert(entry.clone());
        // Many live requests share one token: judge each token once (hashing its claims is
        // most of the cost), not once per request.
        let mut judged: HashMap<*const VerifiedToken, bool> = HashMap::new();
        let mut killed = Vec::new();
        for work in self.map().values() {
            let token = Arc::as_ptr(&work.token);
            let covered = *judged
                .entry(token)
                .or_insert_with(|| single.covering(work.token.claims()).is_some())
                || work
                    .session_id()
                    .is_some_and(|s| single.covering_session(s).is_some());
            if covered && work.killed_by().is_none() {
                work.kill(entry.seq);
                killed.push(work.clone());
            }
        }
        killed
    }
}
