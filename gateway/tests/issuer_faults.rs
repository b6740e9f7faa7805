//! The gateway binary when its issuer is missing or broken: started while the issuer is
//! unreachable, it stays up, says it is not ready, refuses tokens, and becomes ready by itself
//! once the issuer's keys can be fetched; a JWKS endpoint serving garbage never makes it ready
//! nor lets a token through. The "issuer" here is its key material: keys and tokens come from
//! `portcullis_policy`, the SDK both sides share, served over plain loopback HTTP.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::free_port;
use portcullis_policy::{Actor, ActorChain, Claims, JwkSet, SigningKey, sign};

/// Serves `body` (with `status`) to every request on `listener`, on a thread of its own.
fn serve(listener: TcpListener, status: &'static str, body: String) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

struct Gateway {
    child: Child,
    proxy: u16,
    admin: u16,
    issuer_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway whose issuer is expected at a loopback port where nothing listens yet.
fn gateway_without_its_issuer() -> Gateway {
    let dir = tempfile::TempDir::new().unwrap();
    let (proxy, admin, issuer_port) = (free_port(), free_port(), free_port());
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{proxy}\nadmin_listen: 127.0.0.1:{admin}\n\
             public_url: http://127.0.0.1:{proxy}\ngrace_period_seconds: 0\n\
             issuer: {{url: 'http://127.0.0.1:{issuer_port}', issuer: 'https://issuer'}}\n\
             upstreams: [{{name: a, url: 'http://127.0.0.1:9/mcp'}}]\n"
        ),
    )
    .unwrap();
    // Its log (the failed fetches, retried) goes to the test's directory, not the test output.
    let log = std::fs::File::create(dir.path().join("gateway.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_portcullis-gateway"))
        .args(["run", "-c"])
        .arg(&config)
        .stderr(log)
        .spawn()
        .unwrap();
    let gateway = Gateway {
        child,
        proxy,
        admin,
        issuer_port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(gateway.admin, "/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "the gateway did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    gateway
}

/// A GET on loopback `port`: the status (0 when nothing answers) and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"),
    )
}

fn request(port: u16, raw: &str) -> (u16, String) {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A delegation token for upstream `a` of the gateway at `proxy`, signed with `key`.
fn token(key: &SigningKey, proxy: u16) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = Claims {
        issuer: "https://issuer".into(),
        subject: "alice".into(),
        audience: vec![format!("http://127.0.0.1:{proxy}/mcp/a")],
        expires_at: now + 300,
        not_before: None,
        issued_at: now,
        token_id: "t1".into(),
        client_id: "agent".into(),
        scope: None,
        actors: Some(ActorChain::new(Actor {
            sub: "agent".into(),
        })),
        grant_id: Some("g".into()),
        confirmation: None,
        constraints: None,
    };
    sign(&claims, key)
}

/// A `tools/list` through the gateway with `token`: the status and the body.
fn list_tools(gateway: &Gateway, token: &str) -> (u16, String) {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    request(
        gateway.proxy,
        &format!(
            "POST /mcp/a HTTP/1.1\r\nhost: 127.0.0.1:{}\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            gateway.proxy,
            body.len()
        ),
    )
}

#[test]
fn a_gateway_started_without_its_issuer_becomes_ready_once_the_keys_can_be_fetched() {
    let gateway = gateway_without_its_issuer();
    let key = SigningKey::ed25519_from_seed("k1", &[7; 32]).unwrap();
    let token = token(&key, gateway.proxy);

    // Up, but not ready, and no token is accepted: there is nothing to verify it with.
    assert_eq!(get(gateway.admin, "/readyz").0, 503);
    let (status, body) = list_tools(&gateway, &token);
    assert_eq!(status, 401, "{body}");

    // The issuer comes up: its keys are fetched in the background, without a restart.
    let jwks = JwkSet {
        keys: vec![key.public_jwk()],
    };
    let listener = TcpListener::bind(("127.0.0.1", gateway.issuer_port)).unwrap();
    serve(listener, "200 OK", serde_json::to_string(&jwks).unwrap());
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(gateway.admin, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "the gateway never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The token now passes authentication (the upstream behind it is down: 502).
    let (status, body) = list_tools(&gateway, &token);
    assert_eq!(status, 502, "{body}");
}

#[test]
fn a_jwks_endpoint_serving_garbage_never_lets_a_token_through() {
    let gateway = gateway_without_its_issuer();
    let listener = TcpListener::bind(("127.0.0.1", gateway.issuer_port)).unwrap();
    serve(
        listener,
        "200 OK",
        r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"not base64!","kid":"k1"}],"#.to_owned(),
    );
    let key = SigningKey::ed25519_from_seed("k1", &[7; 32]).unwrap();
    let token = token(&key, gateway.proxy);
    // Long enough for several background attempts (every 2 s until a first success).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(get(gateway.admin, "/readyz").0, 503);
    let (status, body) = list_tools(&gateway, &token);
    assert_eq!(status, 401, "{body}");
    let message: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        message["error"]["data"]["reason"], "unknown_kid",
        "{message}"
    );
}
