//! What the gateway binary's tests share.

/// A loopback port nothing listens on (for a moment: bind it soon).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
