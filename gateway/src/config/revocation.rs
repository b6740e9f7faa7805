//! The values of the `revocation:` section: how revocations reach the gateway, and what it
//! does when its knowledge of them grows old.

use serde::Deserialize;

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

/// Where the issuer publishes revocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// The SSE push stream.
    pub stream_url: String,
    /// The signed feed.
    pub feed_url: String,
}
