//! Credentials the gateway holds for others: an upstream's static key, the admin token, the
//! issuer's ingest token. Each is read from a file or an environment variable in one place
//! ([`read`]), and none of them can reach a log line: [`Secret`]'s `Debug` prints a mask.

use std::path::{Path, PathBuf};

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret written in the configuration itself.
    pub(crate) fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// A file; surrounding whitespace (the trailing newline editors add) is not part of it.
    File(&'a Path),
    /// An environment variable, taken as it is.
    Env(&'a str),
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The variable is not set (or not Unicode).
    #[error("{0} is not set")]
    Unset(String),
}

/// Reads the secret kept at `source`.
pub(crate) fn read(source: Source<'_>) -> Result<Secret, SecretError> {
    match source {
        Source::File(path) => std::fs::read_to_string(path)
            .map(|text| Secret(text.trim().to_owned()))
            .map_err(|source| SecretError::File {
                path: path.to_owned(),
                source,
            }),
        Source::Env(var) => std::env::var(var)
            .map(Secret)
            .map_err(|_| SecretError::Unset(var.to_owned())),
    }
}
