//! The one Unix clock of the gateway: token times, rate windows, pins and revocations are all
//! in whole seconds since the epoch.

/// Seconds since the Unix epoch (0 if the system clock is set before it).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
