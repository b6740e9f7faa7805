//! The gateway binary on a signal: an idle gateway exits at once on SIGTERM instead of sitting
//! out its whole grace period, and SIGINT stops it at once.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::free_port;

/// A gateway with a ten-second grace period, ready (its admin port answers). The issuer it
/// names is not running: the gateway starts anyway and keeps trying.
fn start(dir: &tempfile::TempDir) -> Child {
    let admin = free_port();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\nadmin_listen: 127.0.0.1:{admin}\npublic_url: http://127.0.0.1\n\
             grace_period_seconds: 10\nissuer: {{url: 'http://127.0.0.1:{}'}}\n\
             upstreams: [{{name: a, url: 'http://127.0.0.1:9/mcp'}}]\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis-gateway"))
        .args(["run", "-c"])
        .arg(&config)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", admin)).is_err() {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Sends `signal` and returns how long the process took to exit.
fn stop(mut child: Child, signal: &str) -> Duration {
    let started = Instant::now();
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = started + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            return started.elapsed();
        }
        assert!(Instant::now() < deadline, "the gateway did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idle_gateway_exits_on_sigterm_without_waiting_out_its_grace_period() {
    let dir = tempfile::TempDir::new().unwrap();
    let took = stop(start(&dir), "-TERM");
    assert!(
        took < Duration::from_secs(3),
        "took {took:?} of a 10 s grace period"
    );
}

#[test]
fn sigint_stops_the_gateway_at_once() {
    let dir = tempfile::TempDir::new().unwrap();
    let took = stop(start(&dir), "-INT");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}
