//! An event-stream response read straight off its socket, each read stamped by the kernel.
//!
//! The kill-switch figure is the time from the revocation to the moment the gateway's last
//! bytes reach the agent's socket. Read through an HTTP client, it would also hold the time
//! the client's task waited for a core: on a two-core machine a thousand clients, the issuer
//! and the MCP server share the cores with the gateway, and a client that gets to its EOF late
//! says nothing about when the gateway sent it. With `SO_TIMESTAMPNS` the kernel stamps each
//! segment as it arrives, so the arrival time holds however late the reader runs. The time the
//! reader saw the bytes is kept too: the report shows both.
//!
//! Only what the gateway sends here is understood: an HTTP/1.1 response with a chunked body.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::sys::time::TimeSpec;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// Room for a response head; the gateway's are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
const READ_SIZE: usize = 16 * 1024;

/// A received piece of the body.
#[derive(Debug)]
pub(crate) struct Received {
    /// The body bytes it completed (chunk framing removed).
    pub(crate) data: Vec<u8>,
    /// Whether the body ended with it, by its last chunk or by the connection closing.
    pub(crate) ended: bool,
    /// When the kernel received its last segment (the read's own time when the kernel gave none,
    /// as for a bare close).
    pub(crate) arrived: SystemTime,
    /// When this reader got it.
    pub(crate) seen: Instant,
}

/// A streamed response body being read.
#[derive(Debug)]
pub(crate) struct TimedStream {
    socket: TcpStream,
    body: Chunked,
    /// Body bytes that came with the head, and when they arrived.
    early: Option<(Vec<u8>, SystemTime)>,
    /// Reused by every read.
    buffer: Vec<u8>,
}

impl TimedStream {
    /// Sends the whole HTTP/1.1 `request` to `addr` and reads the response head: an error
    /// unless it is a `200` event stream.
    pub(crate) async fn post(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Self> {
        let mut socket = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        socket.set_nodelay(true)?;
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true)?;
        socket.write_all(request).await?;
        let mut head = Vec::new();
        let mut buffer = vec![0; READ_SIZE];
        let (head_end, arrived) = loop {
            let (read, arrived) = recv(&socket, &mut buffer).await?;
            ensure!(read > 0, "the connection closed before the response head");
            head.extend_from_slice(&buffer[..read]);
            if let Some(end) = find(&head, b"\r\n\r\n") {
                break (end + 4, arrived.unwrap_or_else(SystemTime::now));
            }
            ensure!(
                head.len() <= MAX_HEAD,
                "response head over {MAX_HEAD} bytes"
            );
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(&head[..head_end])?;
        let header = |name: &str| {
            response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
        };
        let status = response.code.unwrap_or_default();
        if status != 200 {
            bail!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&head[head_end..])
            );
        }
        ensure!(
            header("content-type").is_some_and(|t| t.starts_with("text/event-stream")),
            "the answer is not an event stream"
        );
        ensure!(
            header("transfer-encoding").is_some_and(|t| t.contains("chunked")),
            "the event stream is not chunked"
        );
        Ok(Self {
            socket,
            body: Chunked::default(),
            early: Some((head.split_off(head_end), arrived)),
            buffer,
        })
    }

    /// The next piece of the body; once it has `ended`, there is no more.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Received> {
        if let Some((early, arrived)) = self.early.take().filter(|(early, _)| !early.is_empty()) {
            return decode(&mut self.body, &early, arrived);
        }
        let (read, arrived) = recv(&self.socket, &mut self.buffer).await?;
        let arrived = arrived.unwrap_or_else(SystemTime::now);
        if read == 0 {
            ensure!(self.body.done(), "the connection closed inside the body");
            return Ok(Received {
                data: Vec::new(),
                ended: true,
                arrived,
                seen: Instant::now(),
            });
        }
        decode(&mut self.body, &self.buffer[..read], arrived)
    }
}

fn decode(body: &mut Chunked, bytes: &[u8], arrived: SystemTime) -> anyhow::Result<Received> {
    let mut data = Vec::new();
    body.feed(bytes, &mut data)?;
    Ok(Received {
        data,
        ended: body.done(),
        arrived,
        seen: Instant::now(),
    })
}

/// One read, with the kernel's arrival time of the last segment it returned.
async fn recv(socket: &TcpStream, buffer: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    loop {
        socket.readable().await?;
        match socket.try_io(Interest::READABLE, || recv_stamped(socket, buffer)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            result => return result,
        }
    }
}

fn recv_stamped(socket: &TcpStream, buffer: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut iov = [IoSliceMut::new(buffer)];
    let mut control = nix::cmsg_space!(TimeSpec);
    let message = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(control.as_mut_slice()),
        MsgFlags::MSG_DONTWAIT,
    )?;
    let arrived = message.cmsgs()?.find_map(|control| match control {
        ControlMessageOwned::ScmTimestampns(at) => Some(
            SystemTime::UNIX_EPOCH
                + Duration::new(
                    u64::try_from(at.tv_sec()).ok()?,
                    u32::try_from(at.tv_nsec()).ok()?,
                ),
        ),
        _ => None,
    });
    Ok((message.bytes, arrived))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// HTTP/1.1 chunked transfer coding, decoded as bytes arrive in pieces of any size.
#[derive(Debug, Default)]
struct Chunked {
    /// An incomplete size or CRLF line carried over to the next piece.
    line: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug, Default, PartialEq)]
enum ChunkState {
    /// Reading a chunk-size line.
    #[default]
    Size,
    /// This many bytes of chunk data to go.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the (empty) trailer section's final CRLF.
    Trailer,
    Done,
}

impl Chunked {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
        while !bytes.is_empty() {
            match self.state {
                ChunkState::Data(left) => {
                    let take = left.min(bytes.len());
                    out.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    self.state = match left - take {
                        0 => ChunkState::DataEnd,
                        left => ChunkState::Data(left),
                    };
                }
                ChunkState::Done => bail!("bytes after the body's last chunk"),
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(bytes);
                        ensure!(self.line.len() <= 1024, "chunk line too long");
                        return Ok(());
                    };
                    self.line.extend_from_slice(&bytes[..end]);
                    bytes = &bytes[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = match self.state {
                        ChunkState::Size => {
                            let size = line.split(|&b| b == b';').next().unwrap_or_default();
                            let size = std::str::from_utf8(size)?.trim();
                            match usize::from_str_radix(size, 16)
                                .with_context(|| format!("chunk size {size:?}"))?
                            {
                                0 => ChunkState::Trailer,
                                size => ChunkState::Data(size),
                            }
                        }
                        ChunkState::DataEnd => {
                            ensure!(line.is_empty(), "chunk data longer than its size");
                            ChunkState::Size
                        }
                        _ if line.is_empty() => ChunkState::Done,
                        // A trailer field: none are expected, but they are allowed.
                        _ => ChunkState::Trailer,
                    };
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(wire: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut chunked = Chunked::default();
        let mut out = Vec::new();
        for bytes in wire.chunks(piece) {
            chunked.feed(bytes, &mut out).expect("valid chunked body");
        }
        (out, chunked.done())
    }

    #[test]
    fn a_chunked_body_decodes_the_same_however_it_is_split() {
        let wire = b"7\r\nevent: \r\n18;ext=1\r\nmessage\ndata: {\"id\":1}\n\n\r\n0\r\n\r\n";
        for piece in 1..=wire.len() {
            let (body, done) = decode_in_pieces(wire, piece);
            assert_eq!(
                body, b"event: message\ndata: {\"id\":1}\n\n",
                "pieces of {piece}"
            );
            assert!(done, "pieces of {piece}");
        }
    }

    #[test]
    fn a_body_is_not_done_before_its_last_chunk() {
        let (body, done) = decode_in_pieces(b"3\r\nabc\r\n0\r\n", 4);
        assert_eq!(body, b"abc");
        assert!(!done, "the final CRLF has not come");
    }

    /// The end is read well after it arrived: its time must be the arrival, not the read.
    #[tokio::test]
    async fn a_stream_is_read_with_the_kernels_arrival_times() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                      transfer-encoding: chunked\r\n\r\n4\r\ndata\r\n",
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let sent = SystemTime::now();
            socket.write_all(b"1\r\n!\r\n0\r\n\r\n").await.unwrap();
            sent
        });
        let mut stream = TimedStream::post(addr, b"POST / HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let sent = server.await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut body = Vec::new();
        let end = loop {
            let received = stream.next().await.unwrap();
            body.extend_from_slice(&received.data);
            if received.ended {
                break received;
            }
        };
        assert_eq!(body, b"data!");
        let lag = end.arrived.duration_since(sent).unwrap();
        assert!(
            lag < Duration::from_millis(150),
            "stamped {lag:?} after it was sent, though it arrived at once and was read 300 ms later"
        );
    }

    #[tokio::test]
    async fn an_answer_other_than_an_event_stream_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket
                .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
        });
        let error = TimedStream::post(addr, b"POST / HTTP/1.1\r\n\r\n")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("HTTP 401"), "{error}");
    }

    #[test]
    fn malformed_framing_is_an_error() {
        for wire in [&b"zz\r\n"[..], b"2\r\nabc\r\n", b"0\r\n\r\nextra"] {
            let mut out = Vec::new();
            assert!(
                Chunked::default().feed(wire, &mut out).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }
}
