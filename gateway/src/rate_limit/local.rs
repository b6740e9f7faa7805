//! Calls per rolling hour, counted per grant on this gateway replica: the count when no
//! shared store is configured, and the fallback of a lenient one that cannot be reached.
//!
//! The rolling hour is approximated with two fixed windows (the previous hour's count weighted
//! by how much of it still overlaps the last 60 minutes), which needs constant memory per
//! grant; `shared.rs` runs the same arithmetic in Redis. Counts are per replica: N replicas
//! allow up to N times the cap.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// The window, in seconds.
pub(super) const WINDOW: i64 = 3600;
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    window_start: i64,
    current: u64,
    previous: u64,
}

impl Counter {
    fn roll(&mut self, now: i64) {
        let window_start = now - now.rem_euclid(WINDOW);
        if window_start != self.window_start {
            self.previous = if window_start - self.window_start == WINDOW {
                self.current
            } else {
                0
            };
            self.current = 0;
            self.window_start = window_start;
        }
    }

    fn estimate(&self, now: i64) -> f64 {
        let into_window = (now - self.window_start) as f64 / WINDOW as f64;
        self.previous as f64 * (1.0 - into_window) + self.current as f64
    }
}

/// Call counters by grant.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    counters: Mutex<HashMap<String, Counter>>,
}

impl RateLimiter {
    fn counters(&self) -> MutexGuard<'_, HashMap<String, Counter>> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a call of `grant` if it stays within `per_hour`; returns whether it was allowed.
    pub(crate) fn try_acquire(&self, grant: &str, per_hour: u32, now: i64) -> bool {
        let mut counters = self.counters();
        if counters.len() >= MAX_TRACKED && !counters.contains_key(grant) {
            // Forget grants idle for more than two windows before tracking a new one.
            counters.retain(|_, c| now - c.window_start < 2 * WINDOW);
        }
        let counter = counters.entry(grant.to_owned()).or_default();
        counter.roll(now);
        if counter.estimate(now) + 1.0 > f64::from(per_hour) {
            return false;
        }
        counter.current += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_beyond_the_cap_within_the_hour_are_refused() {
        let limiter = RateLimiter::default();
        for _ in 0..3 {
            assert!(limiter.try_acquire("g1", 3, 7_200));
        }
        assert!(!limiter.try_acquire("g1", 3, 7_300));
        assert!(
            limiter.try_acquire("g2", 3, 7_300),
            "grants are counted apart"
        );
    }

    #[test]
    fn a_tighter_cap_on_the_same_grant_is_held_to_the_shared_count() {
        let limiter = RateLimiter::default();
        assert!(limiter.try_acquire("g", 100, 0));
        assert!(limiter.try_acquire("g", 100, 0));
        assert!(
            !limiter.try_acquire("g", 2, 0),
            "the sub-agent's cap of 2 is used up"
        );
        assert!(limiter.try_acquire("g", 100, 0));
    }

    #[test]
    fn the_previous_hour_fades_out_of_the_rolling_window() {
        let limiter = RateLimiter::default();
        for _ in 0..10 {
            assert!(limiter.try_acquire("g", 10, 3_599));
        }
        // Just into the next hour almost all of the previous one still counts.
        assert!(!limiter.try_acquire("g", 10, 3_660));
        // Three quarters of the way through it, a quarter of it still does (2.5 calls).
        for _ in 0..7 {
            assert!(limiter.try_acquire("g", 10, 6_300));
        }
        assert!(!limiter.try_acquire("g", 10, 6_300));
    }
}
