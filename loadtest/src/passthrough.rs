//! A bare Pingora reverse proxy: the baseline for the gateway's own cost.
//!
//! It forwards every request to one upstream and rewrites `Host`, as the gateway does, and does
//! nothing else: no token, no parsing, no policy, no downstream token. Gateway vs passthrough
//! is therefore what Portcullis adds on top of Pingora's hop; passthrough vs direct is the hop.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::{HttpPeer, ProxyHttp, Result, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};

struct Passthrough {
    upstream: SocketAddr,
    authority: String,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        request.insert_header(http::header::HOST, self.authority.as_str())?;
        Ok(())
    }
}

struct Stop(tokio::sync::watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for Stop {
    async fn recv(&self) -> ShutdownSignal {
        let mut stop = self.0.clone();
        // Raised or dropped: both mean stop.
        let _raised_or_gone = stop.wait_for(|stop| *stop).await;
        ShutdownSignal::FastShutdown
    }
}

/// A passthrough proxy on its own thread (Pingora builds its own runtimes); stopped on drop.
#[derive(Debug)]
pub(crate) struct PassthroughProxy {
    pub(crate) url: String,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PassthroughProxy {
    /// Proxies `listen` to `upstream`, keeping the path (`/mcp`).
    pub(crate) fn start(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("passthrough".into())
            .spawn(move || {
                // The same worker count as the gateway under test.
                let conf = ServerConf {
                    threads: 2,
                    grace_period_seconds: Some(0),
                    graceful_shutdown_timeout_seconds: Some(0),
                    ..ServerConf::default()
                };
                let mut server = Server::new_with_opt_and_conf(None, conf);
                server.bootstrap();
                let mut proxy = pingora::proxy::http_proxy_service(
                    &server.configuration,
                    Passthrough {
                        upstream,
                        authority: upstream.to_string(),
                    },
                );
                proxy.add_tcp(&listen.to_string());
                server.add_service(proxy);
                server.run(RunArgs {
                    shutdown_signal: Box::new(Stop(stopped)),
                });
            })?;
        let proxy = Self {
            url: format!("http://{listen}/mcp"),
            stop,
            thread: Some(thread),
        };
        // Pingora binds on its own thread: wait until it accepts.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(listen).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the passthrough proxy did not start listening on {listen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(proxy)
    }
}

impl Drop for PassthroughProxy {
    fn drop(&mut self) {
        let _no_receiver = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _panicked = thread.join();
        }
    }
}
