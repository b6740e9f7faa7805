//! `shared_state:`: the Redis that a gateway's replicas share, so that they count a grant's
//! calls against one rate cap and spend one-time values once between them.
//!
//! Without the section every replica keeps its own counts (a cap of N per hour allows N calls
//! at each replica). With it, `mode` says what a replica does while Redis cannot be reached:
//! `lenient` (the default) counts on its own for that time, `strict` refuses the calls whose
//! grant has a rate. The URL may carry a password, so it can come from a file (a mounted
//! Secret) and is kept as a [`Secret`].

use std::time::Duration;

use serde::Deserialize;

use super::raw::RawSharedState;
use super::{ConfigError, invalid};
use crate::secret::{self, Secret, Source};

/// What a replica does with a rate-capped call while the shared store cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedMode {
    /// Count the call on this replica alone, and say so in a metric and the log.
    #[default]
    Lenient,
    /// Refuse the call: no rate-capped call goes through uncounted.
    Strict,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedState {
    /// `redis://[:password@]host[:port][/db]`.
    pub redis_url: Secret,
    /// What happens while Redis cannot be reached.
    pub mode: SharedMode,
    /// Prepended to every key, so that several installations can share one Redis.
    pub key_prefix: String,
    /// Longest wait for one answer from Redis.
    pub timeout: Duration,
}

/// Validates the section: exactly one source of the URL, a `redis://` URL, a bounded timeout.
pub(super) fn shared_state(raw: RawSharedState) -> Result<SharedState, ConfigError> {
    let (field, redis_url) = match (raw.redis_url, &raw.redis_url_file) {
        (Some(url), None) => ("shared_state.redis_url", Secret::new(url)),
        (None, Some(path)) => (
            "shared_state.redis_url_file",
            secret::read(Source::File(path))
                .map_err(|e| invalid("shared_state.redis_url_file", e.to_string()))?,
        ),
        _ => {
            return Err(invalid(
                "shared_state",
                "name the Redis URL once: redis_url or redis_url_file",
            ));
        }
    };
    if !redis_url.expose().starts_with("redis://") {
        return Err(invalid(
            field,
            "scheme must be redis (TLS connections are not supported yet)",
        ));
    }
    // The parser's errors are fixed phrases: they never repeat the URL, which may hold a
    // password.
    redis::Client::open(redis_url.expose())
        .map_err(|e| invalid(field, format!("not a Redis URL: {e}")))?;
    if !(1..=1000).contains(&raw.timeout_ms) {
        return Err(invalid("shared_state.timeout_ms", "must be 1 to 1000"));
    }
    if raw.key_prefix.is_empty()
        || raw.key_prefix.len() > 64
        || raw.key_prefix.chars().any(char::is_whitespace)
    {
        return Err(invalid(
            "shared_state.key_prefix",
            "use 1-64 characters without white space",
        ));
    }
    Ok(SharedState {
        redis_url,
        mode: raw.mode,
        key_prefix: raw.key_prefix,
        timeout: Duration::from_millis(raw.timeout_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    const BASE: &str = "
listen: 127.0.0.1:8080
public_url: https://gw.example.com
issuer: {url: 'http://127.0.0.1:9000'}
upstreams: [{name: expenses, url: 'http://127.0.0.1:8001/mcp'}]
";

    fn with(section: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(&format!("{BASE}shared_state: {section}\n"))
    }

    #[test]
    fn without_the_section_each_replica_counts_alone() {
        let config = Config::from_yaml(BASE).unwrap();
        assert_eq!(config.settings.shared_state, None);
    }

    #[test]
    fn the_section_is_read_with_its_defaults_and_its_url_from_a_file() {
        let shared = with("{redis_url: 'redis://127.0.0.1:6379/2'}")
            .unwrap()
            .settings
            .shared_state
            .unwrap();
        assert_eq!(shared.mode, SharedMode::Lenient);
        assert_eq!(shared.key_prefix, "portcullis:");
        assert_eq!(shared.timeout, Duration::from_millis(100));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("redis-url");
        std::fs::write(&file, "redis://:s3cret@redis:6379\n").unwrap();
        let config = with(&format!(
            "{{redis_url_file: '{}', mode: strict, key_prefix: 'prod:', timeout_ms: 50}}",
            file.display()
        ))
        .unwrap();
        let shared = config.settings.shared_state.as_ref().unwrap();
        assert_eq!(shared.redis_url.expose(), "redis://:s3cret@redis:6379");
        assert_eq!(shared.mode, SharedMode::Strict);
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_section_is_refused_naming_the_field() {
        for (section, field) in [
            ("{mode: strict}", "shared_state"),
            (
                "{redis_url: 'redis://a', redis_url_file: /dev/null}",
                "shared_state",
            ),
            ("{redis_url: 'http://redis:6379'}", "shared_state.redis_url"),
            (
                "{redis_url: 'rediss://redis:6379'}",
                "shared_state.redis_url",
            ),
            ("{redis_url: 'redis://'}", "shared_state.redis_url"),
            (
                "{redis_url_file: /nonexistent/redis-url}",
                "shared_state.redis_url_file",
            ),
            (
                "{redis_url: 'redis://a', timeout_ms: 0}",
                "shared_state.timeout_ms",
            ),
            (
                "{redis_url: 'redis://a', key_prefix: ''}",
                "shared_state.key_prefix",
            ),
        ] {
            match with(section) {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field, "{section}"),
                other => panic!("{section}: expected an error at {field}, got {other:?}"),
            }
        }
        let typo = with("{redis_url: 'redis://a', mdoe: strict}").unwrap_err();
        assert!(typo.to_string().contains("unknown field `mdoe`"), "{typo}");
    }
}
