//! The bytes of large request bodies the gateway holds at once.
//!
//! A `tools/call` is judged on its whole body, so every body is held in memory until it is
//! judged and sent. Pingora keeps bodies up to 64 KiB in its own buffer (one per request, so
//! bounded by connections); a larger body is held by the gateway, and each such body first
//! takes room for itself and the message parsed from it from this budget
//! (`body_buffer_bytes`). A body that does not fit waits, in
//! arrival order, for earlier ones to be sent, then is refused (503, −31014): many concurrent
//! large bodies slow each other down, but never hold more memory than the budget.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics;

/// How long a large body waits for room before it is refused.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The budget, shared by every request of one gateway.
#[derive(Debug)]
pub(crate) struct BodyBuffer {
    room: Arc<Semaphore>,
    wait: Duration,
}

/// Room for one body, given back when dropped.
#[derive(Debug)]
pub(crate) struct HeldBytes {
    permit: OwnedSemaphorePermit,
}

/// No room for a body in time.
#[derive(Debug, thiserror::Error)]
#[error("the gateway holds as many request-body bytes as it may; retry shortly")]
pub(crate) struct BufferFull;

impl BodyBuffer {
    /// A budget of `bytes`; a body waits at most `wait` for room.
    pub(crate) fn new(bytes: usize, wait: Duration) -> Self {
        Self {
            room: Arc::new(Semaphore::new(bytes)),
            wait,
        }
    }

    /// Takes room for `bytes`, waiting for it (behind bodies that asked first). Taking it all at once, never piecemeal, is what keeps bodies waiting for
    /// each other from deadlocking.
    pub(crate) async fn hold(&self, bytes: usize) -> Result<HeldBytes, BufferFull> {
        let n = u32::try_from(bytes).map_err(|_| BufferFull)?;
        let permit = tokio::time::timeout(self.wait, self.room.clone().acquire_many_owned(n))
            .await
            .map_err(|_| BufferFull)?
            .map_err(|_| BufferFull)?;
        metrics::body_buffer(i64::from(n));
        Ok(HeldBytes { permit })
    }
}

impl HeldBytes {
    /// Gives back what a body turned out not to need.
    pub(crate) fn shrink_to(&mut self, bytes: usize) {
        let excess = self.permit.num_permits().saturating_sub(bytes);
        if excess > 0
            && let Some(released) = self.permit.split(excess)
        {
            metrics::body_buffer(-(excess as i64));
            drop(released);
        }
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        metrics::body_buffer(-(self.permit.num_permits() as i64));
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn bodies_wait_for_room_and_give_it_back() {
        let buffer = BodyBuffer::new(100, WAIT);
        let first = buffer.hold(60).await.unwrap();
        let mut second = {
            let waiting = buffer.hold(60);
            tokio::pin!(waiting);
            assert!(
                (&mut waiting).now_or_never().is_none(),
                "no room yet: 60 + 60 > 100"
            );
            drop(first);
            waiting.await.unwrap()
        };
        second.shrink_to(10);
        let third = buffer.hold(90).await.unwrap();
        drop((second, third));
        assert_eq!(buffer.room.available_permits(), 100);
    }

    #[tokio::test]
    async fn a_body_that_finds_no_room_in_time_is_refused() {
        let buffer = BodyBuffer::new(100, Duration::from_millis(20));
        let _held = buffer.hold(100).await.unwrap();
        assert!(buffer.hold(1).await.is_err());
        assert!(buffer.hold(usize::MAX).await.is_err());
    }
}
