//! Following the issuer's revocations: its push stream (`/revocations/stream`, resumed by
//! sequence number after any disconnect) and, while that is down, its signed feed, polled with
//! exponential backoff and jitter. Every entry is applied as it arrives, and the live work it
//! ends is handed to the [`Canceller`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use portcullis_policy::freeze::FreezePattern;
use portcullis_policy::revocation::{MAX_FEED_LEN, RevocationEntry, verify_feed};

use super::{Canceller, LiveWork, Revocations};
use crate::clock;
use crate::config::Sources;
use crate::controls::Controls;
use crate::issuer_keys::IssuerKeys;
use crate::sse::SseReader;

/// The background service that keeps this gateway's revocations current.
#[derive(Debug)]
pub(crate) struct RevocationFollower {
    pub(crate) revocations: Arc<Revocations>,
    /// For the signed feed.
    pub(crate) keys: Arc<IssuerKeys>,
    pub(crate) sources: Sources,
    /// The longest wait between reconnection attempts.
    pub(crate) retry_max: Duration,
    pub(crate) canceller: Canceller,
    /// Where the issuer's change freezes (its `freezes` events) take effect.
    pub(crate) controls: Arc<Controls>,
}

/// Up to half again as long, so a fleet of gateways does not reconnect in lockstep.
fn jittered(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let spread = match getrandom::fill(&mut byte) {
        Ok(()) => u32::from(byte[0]),
        Err(_) => 128,
    };
    base + base * spread / 512
}

impl RevocationFollower {
    async fn follow(&self) {
        let (revocations, sources) = (&self.revocations, &self.sources);
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = std::time::Instant::now();
            let result = follow_stream(
                revocations,
                sources,
                clock::now,
                |killed| self.canceller.cancel(killed),
                |freezes| self.controls.set_fleet_freezes(freezes),
            )
            .await;
            match result {
                Ok(()) => tracing::warn!("the revocation stream ended; reconnecting"),
                Err(e) => tracing::warn!("revocation stream: {e}; falling back to the feed"),
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            // Catch up through the signed feed while the stream is down.
            match poll_feed(revocations, &self.keys, sources, clock::now).await {
                Ok(killed) => self.canceller.cancel(killed),
                Err(e) => tracing::debug!("revocation feed: {e}"),
            }
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(self.retry_max);
        }
    }
}

#[async_trait]
impl BackgroundService for RevocationFollower {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = shutdown.changed() => {}
            () = self.follow() => {}
        }
    }
}

/// Why following the issuer failed this time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FollowError {
    /// Transport or status failure.
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    /// A malformed event or feed.
    #[error("{0}")]
    Protocol(String),
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
pub(crate) async fn poll_feed(
    revocations: &Revocations,
    keys: &IssuerKeys,
    sources: &Sources,
    now: impl Fn() -> i64,
) -> Result<Vec<Arc<LiveWork>>, FollowError> {
    let mut response = client(Some(Duration::from_secs(5)))
        .get(&sources.feed_url)
        .send()
        .await?
        .error_for_status()?;
    // Read no more than a feed may be: whatever answers at that URL cannot make us buffer more.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        // The feed itself, and the line end some servers put after it (trimmed below).
        if body.len() > MAX_FEED_LEN + "\r\n".len() {
            return Err(FollowError::Protocol(format!(
                "the feed exceeds {MAX_FEED_LEN} bytes"
            )));
        }
    }
    let body = String::from_utf8_lossy(&body);
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
    revocations.revoked.confirm_fresh(feed.iat);
    Ok(killed)
}

/// The issuer's `freezes` event: every freeze in force, sent first on each connection and
/// again whenever the set changes.
#[derive(serde::Deserialize)]
struct Freezes {
    freezes: Vec<FreezePattern>,
}

/// The patterns of a `freezes` event; an event with any unreadable pattern is refused whole,
/// so a garbled event never lifts a freeze.
fn freezes_of(data: &str) -> Result<Vec<FreezePattern>, serde_json::Error> {
    serde_json::from_str::<Freezes>(data).map(|set| set.freezes)
}

/// Follows the push stream until it ends or fails, applying each entry as it arrives.
/// `on_killed` gets the work each revocation ended; `on_freezes` the issuer's freezes.
async fn follow_stream(
    revocations: &Revocations,
    sources: &Sources,
    now: impl Fn() -> i64,
    mut on_killed: impl FnMut(Vec<Arc<LiveWork>>),
    mut on_freezes: impl FnMut(Vec<FreezePattern>),
) -> Result<(), FollowError> {
    let mut request = client(None)
        .get(&sources.stream_url)
        .header("accept", "text/event-stream");
    let version = revocations.version();
    if version > 0 {
        request = request.header("last-event-id", version.to_string());
    }
    let mut response = request.send().await?.error_for_status()?;
    revocations.revoked.confirm_fresh(now());
    tracing::info!(
        "following revocations from {} after {version}",
        sources.stream_url
    );
    let mut reader = SseReader::default();
    // The issuer sends a keep-alive every 15 s: three missed ones mean the stream is dead.
    loop {
        let chunk = match tokio::time::timeout(Duration::from_secs(45), response.chunk()).await {
            Err(_) => break Err(FollowError::Protocol("no keep-alive for 45 s".into())),
            Ok(Err(e)) => break Err(e.into()),
            Ok(Ok(None)) => break Ok(()),
            Ok(Ok(Some(chunk))) => chunk,
        };
        revocations.revoked.confirm_fresh(now());
        let events = match reader.feed(&chunk) {
            Ok(events) => events,
            Err(e) => break Err(FollowError::Protocol(e.to_string())),
        };
        let mut entries = Vec::new();
        for event in events {
            let Some(data) = event.data else { continue };
            if event.event.as_deref() == Some("freezes") {
                match freezes_of(&data) {
                    Ok(set) => {
                        tracing::info!("the issuer's freezes: {set:?}");
                        on_freezes(set);
                    }
                    // Keep the last set rather than lift freezes on a garbled event.
                    Err(e) => tracing::warn!("ignoring an unreadable freezes event: {e}"),
                }
                continue;
            }
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freezes_event_is_read_whole_or_not_at_all() {
        let set = freezes_of(r#"{"freezes": ["k8s/*delete*", "payroll/run"]}"#).unwrap();
        assert_eq!(set.len(), 2);
        assert!(freezes_of(r#"{"freezes": []}"#).unwrap().is_empty());
        for garbled in [
            r#"{"freezes": ["k8s/*delete*", "bad pattern!"]}"#,
            r#"{"freezes": "k8s/*"}"#,
            r#"{"lifted": ["k8s/*"]}"#,
            "not json",
        ] {
            assert!(freezes_of(garbled).is_err(), "{garbled}");
        }
    }
}
