//! Stopping on a signal: SIGINT stops at once; SIGTERM (what Kubernetes sends) lets the
//! requests in flight finish, for at most the configured grace period, and stops as soon as
//! none is left. The gateway goes on serving meanwhile: a load balancer may still send
//! requests until it has noticed the pod going away.
//!
//! Pingora's own graceful shutdown always sleeps the whole grace period, so an idle gateway
//! took ten seconds to exit. Here the signal is handed to Pingora only once the gateway is
//! drained, as a fast shutdown: nothing is left to wait for.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{SignalKind, signal};

/// How often a draining gateway looks whether it is done.
const POLL: Duration = Duration::from_millis(50);

/// How many requests are in flight.
#[derive(Debug, Default)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request until the guard is dropped.
    pub(crate) fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn is_idle(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// One request in flight; it leaves when dropped.
#[derive(Debug)]
pub(crate) struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The shutdown signal of a gateway run as a process.
#[derive(Debug)]
pub(crate) struct DrainOnTerm {
    pub(crate) in_flight: Arc<InFlight>,
    pub(crate) grace: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnTerm {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot watch for signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = interrupt.recv() => return ShutdownSignal::FastShutdown,
            _ = term.recv() => {}
        }
        tracing::info!(
            "SIGTERM: serving on until the requests in flight end, for at most {:?}",
            self.grace
        );
        let deadline = Instant::now() + self.grace;
        while !self.in_flight.is_idle() && Instant::now() < deadline {
            tokio::select! {
                _ = interrupt.recv() => break,
                () = tokio::time::sleep(POLL) => {}
            }
        }
        ShutdownSignal::FastShutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_in_flight_until_its_guard_is_dropped() {
        let in_flight = InFlight::default();
        assert!(in_flight.is_idle());
        let first = in_flight.enter();
        let second = in_flight.enter();
        drop(first);
        assert!(!in_flight.is_idle());
        drop(second);
        assert!(in_flight.is_idle());
    }
}
