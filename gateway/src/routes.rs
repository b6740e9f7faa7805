//! The part of the configuration that changes while the gateway runs: its upstream table
//! and the fleets over it.
//!
//! Operators add, remove and repoint upstreams without a restart. On SIGHUP, or when the
//! configuration file's contents change (checked every second: polling also sees a Kubernetes
//! ConfigMap update, which swaps a symlink that a watch on the file itself would miss), the file
//! is read and validated again and a new [`Routes`] is swapped in through an `ArcSwap`.
//!
//! Each request loads the table once, when it arrives, and keeps that snapshot to its end, so
//! no request sees half of each configuration. Live work holds the `Arc<Upstream>` it runs on,
//! so sessions and streams opened before a reload go on undisturbed, and a revoked stream is
//! still cancelled at the upstream it started on. An invalid file changes nothing: the error,
//! with its field path, is logged and counted, and the last good table keeps serving.
//!
//! Only the upstream table, the fleets and the accepted `Host`/`Origin` values reload. Everything else
//! (listen addresses, the issuer, revocation, audit, pinning, limits) is wired into services at
//! start; a reload that changes any of it is applied for the upstreams only and logged as
//! needing a restart for the rest.

use std::sync::Arc;

use crate::config::{Config, ConfigError, RouteTable, Settings};
use crate::discovery::Discovery;
use crate::fleet::Fleet;
use crate::origin::HostPolicy;
use crate::upstream::Upstream;

/// Upstreams, their discovery documents, and the accepted `Host`/`Origin` values.
#[derive(Debug)]
pub(crate) struct Routes {
    upstreams: Vec<Arc<Upstream>>,
    fleets: Vec<Arc<Fleet>>,
    /// RFC 9728 metadata of every upstream.
    pub discovery: Discovery,
    /// Accepted `Host` and `Origin` values.
    pub host_policy: HostPolicy,
}

impl Routes {
    /// The routes of `table`, served under `settings`' public URL and issuer.
    pub(crate) fn new(table: RouteTable, settings: &Settings) -> Self {
        Self {
            discovery: Discovery::new(&table, &settings.issuer),
            host_policy: HostPolicy::new(
                &settings.public_url,
                &table.allowed_hosts,
                &table.allowed_origins,
            ),
            upstreams: table.upstreams,
            fleets: table.fleets,
        }
    }

    /// How many upstreams are served.
    pub(crate) fn upstream_count(&self) -> usize {
        self.upstreams.len()
    }

    /// The upstream served at `/mcp/{name}`.
    pub(crate) fn upstream(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The fleet served at `/mcp/{name}`.
    pub(crate) fn fleet(&self, name: &str) -> Option<&Arc<Fleet>> {
        self.fleets.iter().find(|f| f.name == name)
    }
}

/// What a reload found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Reloaded {
    /// Upstreams now served.
    pub upstreams: usize,
    /// Whether settings outside the routes changed too (they wait for a restart).
    pub restart_needed: bool,
}

/// Reads the running gateway's source file again and, if it is valid, returns its routes.
pub(crate) fn reload(running: &Settings) -> Result<Option<(Routes, Reloaded)>, ConfigError> {
    let Some(path) = &running.source else {
        return Ok(None);
    };
    let Config { settings, routes } = Config::load(path)?;
    let reloaded = Reloaded {
        upstreams: routes.upstreams.len(),
        restart_needed: settings != *running,
    };
    Ok(Some((Routes::new(routes, &settings), reloaded)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "listen: 127.0.0.1:8080\npublic_url: https://gw.example.com\n\
                        issuer: {url: 'https://issuer.example.com'}\n";

    fn write(dir: &tempfile::TempDir, upstreams: &str, extra: &str) -> std::path::PathBuf {
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, format!("{BASE}{extra}upstreams: {upstreams}\n")).unwrap();
        path
    }

    #[test]
    fn a_reload_brings_new_upstreams_and_notices_settings_that_need_a_restart() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = write(&dir, "[{name: a, url: 'http://127.0.0.1:9001/mcp'}]", "");
        let running = Config::load(&path).unwrap();

        write(
            &dir,
            "[{name: a, url: 'http://127.0.0.1:9001/mcp'}, {name: b, url: 'http://127.0.0.1:9002/mcp'}]",
            "allowed_hosts: [gw.internal]\n",
        );
        let (routes, reloaded) = reload(&running.settings).unwrap().unwrap();
        assert_eq!(
            reloaded,
            Reloaded {
                upstreams: 2,
                restart_needed: false
            }
        );
        assert!(routes.upstream("b").is_some());
        assert!(routes.host_policy.check(Some("gw.internal"), None).is_ok());

        write(
            &dir,
            "[{name: a, url: 'http://127.0.0.1:9001/mcp'}]",
            "threads: 7\n",
        );
        let (_, reloaded) = reload(&running.settings).unwrap().unwrap();
        assert!(reloaded.restart_needed);
    }

    #[test]
    fn an_invalid_file_is_an_error_with_its_field_path() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = write(&dir, "[{name: a, url: 'http://127.0.0.1:9001/mcp'}]", "");
        let running = Config::load(&path).unwrap();
        write(&dir, "[{name: a, url: 'ftp://127.0.0.1:9001/mcp'}]", "");
        let error = reload(&running.settings).unwrap_err().to_string();
        assert!(error.contains("upstreams[0].url"), "{error}");
    }

    #[test]
    fn a_configuration_from_no_file_has_nothing_to_reload() {
        let config = Config::from_yaml(&format!(
            "{BASE}upstreams: [{{name: a, url: 'http://127.0.0.1:9001/mcp'}}]\n"
        ))
        .unwrap();
        assert!(reload(&config.settings).unwrap().is_none());
    }
}
