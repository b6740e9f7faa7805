//! The kill switch: what the gateway knows of revocations, and the live work they end.
//!
//! The revoked set lives in an `ArcSwap`: every request checks its token against it without a
//! lock. It is fed by the issuer's push stream (`/revocations/stream`, resumed by sequence
//! number after any disconnect, with exponential backoff and jitter) and, while the stream is
//! down, by polling the signed feed. The gateway always knows how old its knowledge is: in
//! `strict` mode a request is refused when that age passes a bound; in `lenient` mode (the
//! default) it is served on the last known state, which token lifetimes bound.
//!
//! Live work — every request that has an upstream connection, most importantly SSE streams —
//! is registered with its token and the raw upstream socket. When a revocation covers it, the
//! socket's read side is shut down: the upstream response ends at once, the downstream stream ends with a
//! final JSON-RPC error saying the authority was revoked, and the upstream is sent
//! `notifications/cancelled` for the request. A registration is removed when its response ends
//! (before Pingora can return the connection to its pool), so a kill never touches a socket
//! that serves someone else.

use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_policy::VerifiedToken;
use portcullis_policy::revocation::{
    RevocationEntry, RevocationKind, RevokedSet, target_hash, verify_feed,
};
use serde::Deserialize;

use crate::issuer_keys::IssuerKeys;
use crate::sse::SseReader;

/// How long a local kill is held (the tokens it covers are shorter-lived than this).
const LOCAL_KILL_TTL: i64 = 24 * 3600;

/// How the gateway behaves when its revocation knowledge is old.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalenessMode {
    /// Keep serving on the last known state (token lifetimes bound the risk).
    #[default]
    Lenient,
    /// Refuse every request once the knowledge is older than the bound.
    Strict,
}

/// A live request with an upstream connection.
#[derive(Debug)]
pub struct LiveWork {
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
pub struct UpstreamWork {
    /// The upstream, as configured when the work started.
    pub upstream: std::sync::Arc<crate::config::Upstream>,
    /// The JSON-RPC id of an in-flight request (`notifications/cancelled` names it).
    pub request_id: Option<serde_json::Value>,
    /// The client's `MCP-Protocol-Version`, repeated on what the gateway sends.
    pub protocol_version: Option<String>,
    /// The upstream's own id of the MCP session.
    pub session_id: Option<String>,
}

impl LiveWork {
    /// Live work under `token` on upstream socket `fd`.
    pub fn new(
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
}

impl LiveWork {
    /// The sequence number of the revocation that killed this work, if any.
    pub fn killed_by(&self) -> Option<i64> {
        match self.killed_by.load(Ordering::Acquire) {
            0 => None,
            seq => Some(seq),
        }
    }

    /// The token the work runs under.
    pub fn token(&self) -> &VerifiedToken {
        &self.token
    }

    /// The MCP session it belongs to.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    fn fd(&self) -> MutexGuard<'_, Option<RawFd>> {
        self.fd
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn kill(&self, seq: i64) {
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
pub struct LiveGuard {
    id: u64,
    work: Arc<LiveWork>,
    revocations: Arc<Revocations>,
}

impl LiveGuard {
    /// The registered work.
    pub fn work(&self) -> &LiveWork {
        &self.work
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.work.fd().take();
        self.revocations.live().remove(&self.id);
    }
}

/// Revocation knowledge and live work of one gateway.
#[derive(Debug)]
pub struct Revocations {
    set: ArcSwap<RevokedSet>,
    /// Kills an operator made at this gateway only (see `controls`); negative sequence numbers.
    local: ArcSwap<RevokedSet>,
    local_seq: AtomicI64,
    fresh_at: AtomicI64,
    connected: AtomicBool,
    mode: StalenessMode,
    max_staleness: i64,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<LiveWork>>>,
}

impl Revocations {
    /// Empty knowledge, not yet fresh.
    pub fn new(mode: StalenessMode, max_staleness: i64) -> Arc<Self> {
        Arc::new(Self {
            set: ArcSwap::from_pointee(RevokedSet::new()),
            local: ArcSwap::from_pointee(RevokedSet::new()),
            local_seq: AtomicI64::new(0),
            fresh_at: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            mode,
            max_staleness,
            next_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
        })
    }

    fn live(&self) -> MutexGuard<'_, HashMap<u64, Arc<LiveWork>>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry revoking this token or session, if any.
    pub fn covering(
        &self,
        token: &VerifiedToken,
        session_id: Option<&str>,
    ) -> Option<RevocationEntry> {
        let check = |set: &RevokedSet| {
            set.covering(token.claims())
                .or_else(|| session_id.and_then(|s| set.covering_session(s)))
                .cloned()
        };
        check(&self.set.load()).or_else(|| {
            let local = self.local.load();
            if local.is_empty() {
                None
            } else {
                check(&local)
            }
        })
    }

    /// Kills now, at this gateway only, everything `value` of `kind` covers, and refuses it
    /// until the gateway restarts. Returns the entry and the work it ended.
    pub fn apply_local(
        &self,
        kind: RevocationKind,
        value: &str,
        now: i64,
    ) -> (RevocationEntry, Vec<Arc<LiveWork>>) {
        let entry = RevocationEntry {
            seq: self.local_seq.fetch_sub(1, Ordering::AcqRel) - 1,
            kind,
            target: target_hash(kind, value),
            revoked_at: now,
            issued_before: matches!(kind, RevocationKind::Agent | RevocationKind::User)
                .then_some(now),
            expires_at: now + LOCAL_KILL_TTL,
        };
        self.local.rcu(|current| {
            let mut next = RevokedSet::clone(current);
            next.prune(now);
            next.insert(entry.clone());
            next
        });
        let killed = self.kill_covered(&entry);
        crate::metrics::live_work_killed(killed.len());
        (entry, killed)
    }

    fn kill_covered(&self, entry: &RevocationEntry) -> Vec<Arc<LiveWork>> {
        let mut single = RevokedSet::new();
        single.insert(entry.clone());
        // Many live requests share one token: judge each token once (hashing its claims is
        // most of the cost), not once per request.
        let mut judged: HashMap<*const VerifiedToken, bool> = HashMap::new();
        let mut killed = Vec::new();
        for work in self.live().values() {
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

    /// The highest sequence number applied.
    pub fn version(&self) -> i64 {
        self.set.load().version()
    }

    /// Seconds since the knowledge was last confirmed current.
    pub fn staleness(&self, now: i64) -> i64 {
        now - self.fresh_at.load(Ordering::Acquire)
    }

    /// Whether requests must be refused for stale knowledge (strict mode only).
    pub fn refuses_for_staleness(&self, now: i64) -> bool {
        self.mode == StalenessMode::Strict && self.staleness(now) > self.max_staleness
    }

    /// Whether the push stream is connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn confirm_fresh(&self, at: i64) {
        self.fresh_at.fetch_max(at, Ordering::AcqRel);
    }

    /// Registers live work on an upstream socket. Work that a revocation already covers is
    /// killed here: the request was admitted, but the revocation arrived before it registered,
    /// too late for the kill loop to see it. The set is read after the registration is in the
    /// map, and the loop stores the set before it walks the map, so one of the two always
    /// sees the other.
    pub fn register(self: &Arc<Self>, work: LiveWork) -> LiveGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let work = Arc::new(work);
        self.live().insert(id, work.clone());
        if let Some(entry) = self.covering(&work.token, work.session_id()) {
            work.kill(entry.seq);
        }
        LiveGuard {
            id,
            work,
            revocations: self.clone(),
        }
    }

    /// Applies new entries and kills the live work they cover. Returns the killed work.
    pub fn apply(&self, entries: Vec<RevocationEntry>, now: i64) -> Vec<Arc<LiveWork>> {
        let current = self.set.load();
        let fresh: Vec<RevocationEntry> = entries
            .into_iter()
            .filter(|e| e.seq > current.version() && e.expires_at > now)
            .collect();
        if fresh.is_empty() {
            return Vec::new();
        }
        let mut next = RevokedSet::clone(&current);
        for entry in &fresh {
            next.insert(entry.clone());
            crate::metrics::revocation_applied(entry.kind.as_str(), now - entry.revoked_at);
        }
        next.prune(now);
        self.set.store(Arc::new(next));

        let killed: Vec<Arc<LiveWork>> = fresh.iter().flat_map(|e| self.kill_covered(e)).collect();
        crate::metrics::live_work_killed(killed.len());
        killed
    }
}

/// Why following the issuer failed this time.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// Transport or status failure.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// A malformed event or feed.
    #[error("{0}")]
    Protocol(String),
}

/// Where the issuer publishes revocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The SSE push stream.
    pub stream_url: String,
    /// The signed feed.
    pub feed_url: String,
}

fn client(timeout: Option<Duration>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5));
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .build()
        .expect("a reqwest client with static settings builds")
}

/// Fetches and applies the signed feed once.
pub async fn poll_feed(
    revocations: &Revocations,
    keys: &IssuerKeys,
    sources: &Sources,
    now: impl Fn() -> i64,
) -> Result<Vec<Arc<LiveWork>>, FollowError> {
    let body = client(Some(Duration::from_secs(5)))
        .get(&sources.feed_url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let verify =
        |verifier: &portcullis_policy::Verifier| verify_feed(body.trim(), verifier, now(), 300);
    let feed = match verify(&keys.verifier()) {
        Err(portcullis_policy::revocation::FeedError::Signature(
            portcullis_policy::VerifyError::UnknownKid(_),
        )) if keys.refresh_for_unknown_kid().await => verify(&keys.verifier()),
        other => other,
    }
    .map_err(|e| FollowError::Protocol(e.to_string()))?;
    let killed = revocations.apply(feed.entries, now());
    revocations.confirm_fresh(feed.iat);
    Ok(killed)
}

/// Follows the push stream until it ends or fails, applying each entry as it arrives.
/// `on_killed` gets the work each revocation ended.
pub async fn follow_stream(
    revocations: &Revocations,
    sources: &Sources,
    now: impl Fn() -> i64,
    mut on_killed: impl FnMut(Vec<Arc<LiveWork>>),
) -> Result<(), FollowError> {
    let mut request = client(None)
        .get(&sources.stream_url)
        .header("accept", "text/event-stream");
    let version = revocations.version();
    if version > 0 {
        request = request.header("last-event-id", version.to_string());
    }
    let mut response = request.send().await?.error_for_status()?;
    revocations.connected.store(true, Ordering::Release);
    revocations.confirm_fresh(now());
    tracing::info!(
        "following revocations from {} after {version}",
        sources.stream_url
    );
    let mut reader = SseReader::default();
    // The issuer sends a keep-alive every 15 s: three missed ones mean the stream is dead.
    let result = loop {
        let chunk = match tokio::time::timeout(Duration::from_secs(45), response.chunk()).await {
            Err(_) => break Err(FollowError::Protocol("no keep-alive for 45 s".into())),
            Ok(Err(e)) => break Err(e.into()),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(chunk))) => chunk,
        };
        revocations.confirm_fresh(now());
        let events = match reader.feed(&chunk) {
            Ok(events) => events,
            Err(e) => break Err(FollowError::Protocol(e.to_string())),
        };
        let mut entries = Vec::new();
        for event in events {
            let Some(data) = event.data else { continue };
            match serde_json::from_str::<RevocationEntry>(&data) {
                Ok(entry) => entries.push(entry),
                Err(e) => tracing::warn!("ignoring an unreadable revocation event: {e}"),
            }
        }
        if !entries.is_empty() {
            let started = std::time::Instant::now();
            let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
            let killed = revocations.apply(entries, now());
            tracing::info!(
                "applied revocation(s) {seqs:?}: {} live request(s) ended in {} µs",
                killed.len(),
                started.elapsed().as_micros()
            );
            on_killed(killed);
        }
    };
    revocations.connected.store(false, Ordering::Release);
    result
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;

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
