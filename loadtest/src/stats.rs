//! Latency histograms (HdrHistogram, microseconds) and the figures reported from them.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Up to an hour, in microseconds, at three significant digits: any single latency this tool
/// can see fits, and quantiles are exact to 0.1 %.
const HIGHEST_US: u64 = 3_600_000_000;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(crate) fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .expect("1 µs to 1 h at 3 digits is a valid histogram"),
        )
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Above the bound is recorded at the bound: nothing this tool waits on gets there.
        self.0.saturating_record(micros.max(1));
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        // Same bounds on both sides, so adding cannot fail.
        self.0
            .add(&other.0)
            .expect("histograms with the same bounds add up");
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let h = &self.0;
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// Quantiles of a set of latencies (all zero when it is empty).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct LatencySummary {
    pub(crate) count: u64,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    pub(crate) mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_recorded_values() {
        let mut latencies = Latencies::new();
        for micros in 1..=100 {
            latencies.record(Duration::from_micros(micros));
        }
        let mut more = Latencies::new();
        more.record(Duration::from_secs(2));
        latencies.merge(&more);
        let summary = latencies.summary();
        assert_eq!(summary.count, 101);
        assert_eq!(summary.p50_us, 51);
        assert_eq!(summary.p99_us, 100);
        assert!(summary.max_us >= 1_999_000, "{summary:?}");
    }
}
