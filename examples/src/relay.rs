//! A loopback TCP relay that can be cut and restored, to test what the gateway does when it
//! loses the issuer: the network failure is real (connections reset, new ones refused), and
//! nothing in the gateway knows it is being tested.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A relay from a loopback port to `target`.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    /// Starts relaying to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *cut_rx.borrow() {
                    continue; // dropped: the client sees its connection closed
                }
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _copied = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _cut = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Ok(Self { addr, cut })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Severs every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Relays again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}
