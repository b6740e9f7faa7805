//! The kill switch: what the gateway knows of revocations, and the live work they end.
//!
//! - [`revoked`]: the revoked set, read lock-free by every request, and its freshness;
//! - [`live`]: the registry of requests holding an upstream connection;
//! - [`follower`]: the issuer's push stream (resumed by sequence number after any disconnect,
//!   with exponential backoff and jitter) and, while it is down, its signed feed;
//! - [`cancel`]: telling the upstream to stop what was killed (`notifications/cancelled`, then
//!   the session's `DELETE`);
//! - [`Revocations`] ties the first two together, and [`kill_locally`] is an operator's kill at
//!   this gateway alone.
//!
//! Live work killed here ends three ways at once: the upstream socket's read side is shut, so
//! the response ends; the agent's stream ends with a final JSON-RPC error naming the revocation
//! (see `proxy`); and the upstream is told to cancel.

mod cancel;
mod follower;
mod live;
mod revoked;

use std::sync::Arc;

use portcullis_policy::VerifiedToken;
use portcullis_policy::revocation::{RevocationEntry, RevocationKind};

pub(crate) use cancel::Canceller;
pub(crate) use follower::{RevocationFollower, poll_feed};
pub(crate) use live::{LiveGuard, LiveWork, UpstreamWork};

use crate::config::StalenessMode;

/// Revocation knowledge and live work of one gateway.
#[derive(Debug)]
pub(crate) struct Revocations {
    revoked: revoked::Revoked,
    live: Arc<live::LiveRegistry>,
}

impl Revocations {
    /// Empty knowledge, not yet fresh, and no live work.
    pub(crate) fn new(mode: StalenessMode, max_staleness: i64) -> Arc<Self> {
        Arc::new(Self {
            revoked: revoked::Revoked::new(mode, max_staleness),
            live: Arc::default(),
        })
    }

    /// The entry revoking this token or session, if any.
    pub(crate) fn covering(
        &self,
        token: &VerifiedToken,
        session_id: Option<&str>,
    ) -> Option<RevocationEntry> {
        self.revoked.covering(token, session_id)
    }

    /// Registers live work on an upstream socket. Work that a revocation already covers is
    /// killed here: the request was admitted, but the revocation arrived before it registered,
    /// too late for the kill loop to see it. The set is read after the registration is in the
    /// map, and [`apply`](Self::apply) stores the set before it walks the map, so one of the
    /// two always sees the other.
    pub(crate) fn register(&self, work: LiveWork) -> LiveGuard {
        let guard = self.live.insert(work);
        let work = guard.work();
        if let Some(entry) = self.revoked.covering(work.token(), work.session_id()) {
            work.kill(entry.seq);
        }
        guard
    }

    /// Applies new entries and kills the live work they cover. Returns the killed work.
    pub(crate) fn apply(&self, entries: Vec<RevocationEntry>, now: i64) -> Vec<Arc<LiveWork>> {
        let fresh = self.revoked.add(entries, now);
        let killed: Vec<Arc<LiveWork>> = fresh
            .iter()
            .flat_map(|e| self.live.kill_covered(e))
            .collect();
        if !fresh.is_empty() {
            crate::metrics::live_work_killed(killed.len());
        }
        killed
    }

    /// The highest sequence number applied.
    pub(crate) fn version(&self) -> i64 {
        self.revoked.version()
    }

    /// Seconds since the knowledge was last confirmed current.
    pub(crate) fn staleness(&self, now: i64) -> i64 {
        self.revoked.staleness(now)
    }

    /// Whether requests must be refused for stale knowledge (strict mode only).
    pub(crate) fn refuses_for_staleness(&self, now: i64) -> bool {
        self.revoked.refuses_for_staleness(now)
    }
}

/// Kills now, at this gateway only, everything `value` of `kind` covers, refuses it until the
/// gateway restarts, and tells the upstreams to cancel. Returns the entry and how much live
/// work it ended.
pub(crate) fn kill_locally(
    revocations: &Revocations,
    canceller: &Canceller,
    kind: RevocationKind,
    value: &str,
    now: i64,
) -> (RevocationEntry, usize) {
    let entry = revocations.revoked.add_local(kind, value, now);
    let killed = revocations.live.kill_covered(&entry);
    crate::metrics::live_work_killed(killed.len());
    let count = killed.len();
    canceller.cancel(killed);
    (entry, count)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;

    use portcullis_policy::revocation::target_hash;

    use super::*;
    use crate::test_tokens;

    /// A connected loopback socket: the "upstream connection" live work is registered on.
    fn upstream() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    fn work(token_id: &str, socket: &TcpStream) -> LiveWork {
        let config = crate::config::Config::from_yaml(
            "listen: 127.0.0.1:8080\npublic_url: https://gw/\nissuer: {url: 'http://127.0.0.1:9000'}\n\
             upstreams: [{name: expenses, url: 'http://127.0.0.1:8001/mcp'}]\n",
        )
        .unwrap();
        LiveWork::new(
            test_tokens::verified(token_id, i64::MAX).1,
            Some("s1".into()),
            socket.as_raw_fd(),
            UpstreamWork {
                upstream: config.upstream("expenses").unwrap().clone(),
                request_id: None,
                protocol_version: None,
                session_id: None,
            },
        )
    }

    fn revoke_token(token_id: &str, seq: i64) -> RevocationEntry {
        RevocationEntry {
            seq,
            kind: RevocationKind::Token,
            target: target_hash(RevocationKind::Token, token_id),
            revoked_at: 0,
            issued_before: None,
            expires_at: i64::MAX,
        }
    }

    #[test]
    fn a_revocation_kills_registered_work_and_shuts_its_socket() {
        let revocations = Revocations::new(StalenessMode::Lenient, 60);
        let (mut socket, _server) = upstream();
        let live = revocations.register(work("t1", &socket));
        let (other_socket, _other_server) = upstream();
        let other = revocations.register(work("t2", &other_socket));

        let killed = revocations.apply(vec![revoke_token("t1", 7)], 1);
        assert_eq!(killed.len(), 1);
        assert_eq!(live.work().killed_by(), Some(7));
        assert_eq!(
            other.work().killed_by(),
            None,
            "another token's work runs on"
        );
        // The read side is shut: the response ends here at once.
        assert_eq!(socket.read(&mut [0; 8]).unwrap(), 0);
    }

    #[test]
    fn work_registered_after_a_revocation_it_falls_under_is_killed_at_registration() {
        // The race: the request was admitted, then the revocation was applied (its kill loop
        // finding nothing), then the request reached its upstream and registered.
        let revocations = Revocations::new(StalenessMode::Lenient, 60);
        assert!(revocations.apply(vec![revoke_token("t1", 9)], 1).is_empty());

        let (mut socket, _server) = upstream();
        let live = revocations.register(work("t1", &socket));
        assert_eq!(live.work().killed_by(), Some(9));
        assert_eq!(socket.read(&mut [0; 8]).unwrap(), 0);

        let (other_socket, _other_server) = upstream();
        let other = revocations.register(work("t2", &other_socket));
        assert_eq!(other.work().killed_by(), None);
    }

    #[test]
    fn a_finished_request_is_forgotten_and_its_socket_never_touched() {
        let revocations = Revocations::new(StalenessMode::Lenient, 60);
        let (socket, mut server) = upstream();
        drop(revocations.register(work("t1", &socket)));
        assert!(revocations.apply(vec![revoke_token("t1", 3)], 1).is_empty());
        // The connection may serve someone else now: it is still open both ways.
        let mut writer = &socket;
        std::io::Write::write_all(&mut writer, b"ping").unwrap();
        let mut got = [0; 4];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
    }
}
