//! `sessions:`: the keys that seal session ids, so that every replica reads every other's,
//! and how long a session may live.
//!
//! `keys_file` holds base64url 32-byte keys, one per line (a mounted Secret); the first seals
//! new ids and every key opens them, so a key is rotated by putting the new one first and
//! removing the old one after `max_lifetime_seconds`. Without the file a gateway seals with
//! a key of its own, which no other replica can read.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::raw::RawSessions;
use super::{ConfigError, invalid};
use crate::secret::{self, Source};

/// At most this many keys may be listed: every id is tried against each.
const MAX_KEYS: usize = 8;

/// One 32-byte session key.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl SessionKey {
    /// A key from its base64url text (43 characters, no padding).
    pub fn from_base64url(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The key itself, for the cipher that seals ids.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key for another purpose than sealing ids (`context` names it), derived from this one,
    /// so replicas that share session keys share it too.
    pub(crate) fn derive(&self, context: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        hash.update(b"portcullis session key derivation\0");
        hash.update(context);
        hash.update(b"\0");
        hash.update(self.0);
        hash.finalize().into()
    }

    /// A new random key, for a gateway that serves alone.
    pub(crate) fn generate() -> Self {
        let mut key = [0; 32];
        getrandom::fill(&mut key).expect("the OS random source is available");
        Self(key)
    }
}

/// The validated section.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    /// The keys, the sealing one first; `None`: a key generated at start.
    pub keys: Option<Vec<SessionKey>>,
    /// A session unused this long, at any replica, is ended.
    pub idle_timeout: Duration,
    /// A session id is refused this long after its session opened.
    pub max_lifetime: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            keys: None,
            idle_timeout: Duration::from_secs(super::raw::DEFAULT_SESSION_IDLE),
            max_lifetime: Duration::from_secs(super::raw::DEFAULT_SESSION_LIFETIME),
        }
    }
}

/// Validates the section: readable keys, an idle timeout within the lifetime.
pub(super) fn sessions(raw: RawSessions) -> Result<SessionSettings, ConfigError> {
    let keys = match &raw.keys_file {
        Some(path) => {
            let text = secret::read(Source::File(path))
                .map_err(|e| invalid("sessions.keys_file", e.to_string()))?;
            let keys = text
                .expose()
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .enumerate()
                .map(|(n, line)| {
                    SessionKey::from_base64url(line).ok_or_else(|| {
                        invalid(
                            "sessions.keys_file",
                            format!(
                                "line {}: not a base64url 32-byte key (43 characters)",
                                n + 1
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if keys.is_empty() || keys.len() > MAX_KEYS {
                return Err(invalid(
                    "sessions.keys_file",
                    format!("list 1 to {MAX_KEYS} keys, one per line"),
                ));
            }
            Some(keys)
        }
        None => None,
    };
    if !(60..=30 * 24 * 3600).contains(&raw.max_lifetime_seconds) {
        return Err(invalid(
            "sessions.max_lifetime_seconds",
            "must be 60 to 2592000 (30 days)",
        ));
    }
    if raw.idle_timeout_seconds < 60 || raw.idle_timeout_seconds > raw.max_lifetime_seconds {
        return Err(invalid(
            "sessions.idle_timeout_seconds",
            "must be at least 60 and at most max_lifetime_seconds",
        ));
    }
    Ok(SessionSettings {
        keys,
        idle_timeout: Duration::from_secs(raw.idle_timeout_seconds),
        max_lifetime: Duration::from_secs(raw.max_lifetime_seconds),
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
        Config::from_yaml(&format!("{BASE}sessions: {section}\n"))
    }

    fn key(byte: u8) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32])
    }

    #[test]
    fn without_the_section_a_gateway_seals_with_a_key_of_its_own() {
        let sessions = Config::from_yaml(BASE).unwrap().settings.sessions;
        assert_eq!(sessions, SessionSettings::default());
        assert_eq!(sessions.keys, None);
        assert_eq!(sessions.idle_timeout, Duration::from_secs(86_400));
    }

    #[test]
    fn keys_are_read_one_per_line_the_sealing_one_first() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("session-keys");
        std::fs::write(&file, format!("{}\n\n  {}\n", key(1), key(2))).unwrap();
        let config = with(&format!(
            "{{keys_file: '{}', idle_timeout_seconds: 600, max_lifetime_seconds: 3600}}",
            file.display()
        ))
        .unwrap();
        let sessions = &config.settings.sessions;
        let keys = sessions.keys.as_ref().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], SessionKey::from_base64url(&key(1)).unwrap());
        assert_eq!(sessions.max_lifetime, Duration::from_secs(3600));
        assert!(!format!("{config:?}").contains(&key(1)));
    }

    #[test]
    fn a_bad_section_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let short = write("short", &key(1)[..40]);
        let empty = write("empty", "\n");
        let many = write("many", &format!("{}\n", key(1)).repeat(MAX_KEYS + 1));
        for (section, field) in [
            (format!("{{keys_file: '{short}'}}"), "sessions.keys_file"),
            (format!("{{keys_file: '{empty}'}}"), "sessions.keys_file"),
            (format!("{{keys_file: '{many}'}}"), "sessions.keys_file"),
            ("{keys_file: /nonexistent}".into(), "sessions.keys_file"),
            (
                "{idle_timeout_seconds: 10}".into(),
                "sessions.idle_timeout_seconds",
            ),
            (
                "{idle_timeout_seconds: 7200, max_lifetime_seconds: 3600}".into(),
                "sessions.idle_timeout_seconds",
            ),
            (
                "{max_lifetime_seconds: 0}".into(),
                "sessions.max_lifetime_seconds",
            ),
        ] {
            match with(&section) {
                Err(ConfigError::Invalid { field: got, .. }) => assert_eq!(got, field, "{section}"),
                other => panic!("{section}: expected an error at {field}, got {other:?}"),
            }
        }
        let typo = with("{key_file: /x}").unwrap_err();
        assert!(
            typo.to_string().contains("unknown field `key_file`"),
            "{typo}"
        );
    }

    #[test]
    fn keys_read_as_43_base64url_characters_only() {
        let text = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(SessionKey::from_base64url(&text), Some(SessionKey([7; 32])));
        assert_eq!(SessionKey::from_base64url(&text[..40]), None);
        assert_eq!(SessionKey::from_base64url("not base64!"), None);
        assert_eq!(format!("{:?}", SessionKey([7; 32])), "SessionKey(***)");
    }
}
