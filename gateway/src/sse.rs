//! Cutting a `text/event-stream` into events as bytes arrive, rewriting only the events that
//! need it.
//!
//! The stream is never buffered whole: bytes up to the last complete event go out at once and
//! only an incomplete tail is carried to the next chunk. Events the caller does not rewrite
//! pass through byte for byte. Events end at a blank line, with any of the line endings the
//! SSE format allows (`\n`, `\r\n`, `\r`).
//!
//! The stream is read exactly as the agent's client reads it (the WHATWG event-stream rules the
//! official SDKs follow): one leading byte-order mark is dropped, and a `\r` that ends the
//! stream ends its line. Any difference between the two readings would let an event through
//! that the gateway did not see as one. The mark dropped for reading is still sent on: the
//! client drops one mark too, and must drop that one, or a second mark behind it would be
//! dropped by the client and read by the gateway as part of the first line (found by the
//! `sse_list_filter_differential` fuzz target).

/// The largest incomplete event held while waiting for its end.
pub(crate) const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// The event stream exceeded [`MAX_EVENT_BYTES`] without ending an event.
#[derive(Debug, thiserror::Error)]
#[error("an SSE event grew beyond {MAX_EVENT_BYTES} bytes")]
pub(crate) struct EventTooLarge;

/// The UTF-8 byte-order mark a stream may open with.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes received and not yet framed into events, and how far they have been scanned: a large
/// event arriving in many chunks is scanned once, not once per chunk.
#[derive(Debug, Default)]
struct Framer {
    /// Whether the stream's first bytes have been checked for a byte-order mark.
    past_bom: bool,
    /// A leading byte-order mark was taken off `carry` and is still to be sent on.
    bom_to_send: bool,
    /// Whether the stream has ended: a final `\r` is then a line end, not half of `\r\n`.
    ended: bool,
    carry: Vec<u8>,
    /// Where the event being scanned starts.
    event_start: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    /// Where scanning resumes.
    pos: usize,
}

impl Framer {
    fn push(&mut self, chunk: &[u8], ended: bool) -> Result<(), EventTooLarge> {
        self.carry.extend_from_slice(chunk);
        self.ended |= ended;
        if !self.past_bom {
            // Nothing has been scanned yet, so dropping bytes moves no position.
            if self.carry.starts_with(BOM) {
                self.carry.drain(..BOM.len());
                self.past_bom = true;
                self.bom_to_send = true;
            } else if !BOM.starts_with(&self.carry) || self.ended {
                self.past_bom = true;
            }
        }
        if self.carry.len() - self.event_start > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// The next complete event (through its blank line), as a range of `carry`.
    fn next_event(&mut self) -> Option<std::ops::Range<usize>> {
        if !self.past_bom {
            // The first bytes may yet turn out to be a byte-order mark.
            return None;
        }
        let buf = &self.carry;
        let mut i = self.pos;
        while i < buf.len() {
            let terminator = match buf[i] {
                b'\n' => 1,
                b'\r' => match buf.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None if self.ended => 1,
                    // A lone '\r' at the end may be the first half of "\r\n".
                    None => break,
                },
                _ => {
                    i += 1;
                    continue;
                }
            };
            if i == self.line_start {
                let event = self.event_start..i + terminator;
                self.event_start = event.end;
                self.line_start = event.end;
                self.pos = event.end;
                return Some(event);
            }
            i += terminator;
            self.line_start = i;
        }
        self.pos = i;
        None
    }

    /// Forgets the events already taken.
    fn compact(&mut self) {
        let taken = self.event_start;
        self.carry.drain(..taken);
        self.event_start = 0;
        self.line_start -= taken;
        self.pos -= taken;
    }
}

/// Incremental SSE framing state for one response.
#[derive(Debug, Default)]
pub(crate) struct SseRewriter {
    framer: Framer,
}

impl SseRewriter {
    /// Feeds one chunk, the last one when `ended`. `rewrite` gets each complete event's data
    /// (its `data:` lines joined by `\n`) and returns `Some(new data)` to replace it. Returns
    /// the bytes to send on; an event left incomplete at the end is dropped, as a client
    /// would drop it.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        ended: bool,
        mut rewrite: impl FnMut(&str) -> Option<String>,
    ) -> Result<Vec<u8>, EventTooLarge> {
        self.framer.push(chunk, ended)?;
        let mut out = Vec::with_capacity(chunk.len());
        if std::mem::take(&mut self.framer.bom_to_send) {
            out.extend_from_slice(BOM);
        }
        while let Some(range) = self.framer.next_event() {
            let event = &self.framer.carry[range];
            match data_of(event).and_then(|data| rewrite(&data)) {
                Some(data) => write_event(event, &data, &mut out),
                None => out.extend_from_slice(event),
            }
        }
        self.framer.compact();
        Ok(out)
    }

    /// Whether an incomplete event is pending (at end of stream it is dropped, as an SSE
    /// client would drop it).
    #[cfg(test)]
    fn has_pending(&self) -> bool {
        !self.framer.carry.is_empty()
    }
}

/// One event as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field (the type; `message` when absent, as for a browser).
    pub event: Option<String>,
    /// The `data:` lines, joined by `\n`; `None` for a comment-only event (a keep-alive).
    pub data: Option<String>,
}

/// Incremental SSE parsing for a consumer (the revocation stream), sharing the framing rules
/// of [`SseRewriter`].
#[derive(Debug, Default)]
pub(crate) struct SseReader {
    framer: Framer,
}

impl SseReader {
    /// Feeds one chunk and returns the events it completed.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        self.framer.push(chunk, false)?;
        let mut events = Vec::new();
        while let Some(range) = self.framer.next_event() {
            let event = &self.framer.carry[range];
            let field = |name: &[u8]| {
                lines(event).find_map(|line| {
                    let value = line.strip_prefix(name)?.strip_prefix(b":")?;
                    let value = value.strip_prefix(b" ").unwrap_or(value);
                    Some(String::from_utf8_lossy(value).into_owned())
                })
            };
            events.push(SseEvent {
                id: field(b"id"),
                event: field(b"event"),
                data: data_of(event).map(std::borrow::Cow::into_owned),
            });
        }
        self.framer.compact();
        Ok(events)
    }
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .flat_map(|l| l.split(|b| *b == b'\r'))
        .filter(|l| !l.is_empty())
}

/// An event's data: borrowed from the event when it is one valid UTF-8 line (the usual case,
/// so most events cost no allocation), joined into a new string otherwise.
fn data_of(event: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    let mut data: Option<std::borrow::Cow<'_, str>> = None;
    for line in lines(event) {
        let Some(value) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match value {
            [] => &[][..],
            [b':', b' ', rest @ ..] => rest,
            [b':', rest @ ..] => rest,
            _ => continue, // a field named e.g. "database", not "data"
        };
        // Judge what a lenient client would read: invalid UTF-8 decoded with replacement
        // characters, never skipped.
        let value = String::from_utf8_lossy(value);
        match &mut data {
            Some(d) => {
                let d = d.to_mut();
                d.push('\n');
                d.push_str(&value);
            }
            None => data = Some(value),
        }
    }
    data
}

fn write_event(original: &[u8], data: &str, out: &mut Vec<u8>) {
    for line in lines(original) {
        let is_data = line.starts_with(b"data:") || line == b"data";
        if !is_data {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(data: &str) -> Option<String> {
        data.contains("tools").then(|| data.to_uppercase())
    }

    #[test]
    fn events_not_rewritten_pass_through_byte_for_byte() {
        let mut sse = SseRewriter::default();
        let input = b"id: 1\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\nid: 2\ndata:\n\n";
        assert_eq!(sse.feed(input, false, upper).unwrap(), input.to_vec());
        assert!(!sse.has_pending());
    }

    #[test]
    fn an_event_split_across_chunks_is_rewritten_once_complete() {
        let mut sse = SseRewriter::default();
        let first = sse
            .feed(b"id: 7\nevent: message\ndata: {\"to", false, upper)
            .unwrap();
        assert!(first.is_empty());
        assert!(sse.has_pending());
        let second = sse.feed(b"ols\":[]}\n\nid: 8\n", false, upper).unwrap();
        assert_eq!(
            second,
            b"id: 7\nevent: message\ndata: {\"TOOLS\":[]}\n\n".to_vec()
        );
        assert!(sse.has_pending());
    }

    #[test]
    fn a_large_event_in_many_small_chunks_comes_out_whole_and_once() {
        let data = "x".repeat(300_000);
        let stream = format!("event: message\r\ndata: {data}\r\n\r\ndata: next\n\n");
        let mut rewriter = SseRewriter::default();
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for chunk in stream.as_bytes().chunks(1000) {
            out.extend(
                rewriter
                    .feed(chunk, false, |d| {
                        seen.push(d.len());
                        None
                    })
                    .unwrap(),
            );
        }
        assert_eq!(out, stream.as_bytes());
        assert_eq!(seen, [300_000, 4]);
        assert!(!rewriter.has_pending());
    }

    #[test]
    fn a_crlf_split_between_chunks_is_not_taken_for_two_line_ends() {
        let mut sse = SseRewriter::default();
        assert!(sse.feed(b"data: x\r", false, upper).unwrap().is_empty());
        assert!(sse.feed(b"\n", false, upper).unwrap().is_empty());
        assert_eq!(
            sse.feed(b"\r\n", false, upper).unwrap(),
            b"data: x\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn multi_line_data_is_joined_before_rewriting() {
        let mut sse = SseRewriter::default();
        let out = sse.feed(b"data: {\"tools\":\ndata: []}\n\n", false, |d| {
            assert_eq!(d, "{\"tools\":\n[]}");
            Some("{}".into())
        });
        assert_eq!(out.unwrap(), b"data: {}\n\n".to_vec());
    }

    #[test]
    fn a_reader_returns_ids_data_and_keep_alives() {
        let mut reader = SseReader::default();
        assert!(
            reader
                .feed(b"id: 4\nevent: revocation\ndata: {\"seq\"")
                .unwrap()
                .is_empty()
        );
        let events = reader.feed(b":4}\n\n: keep-alive\n\n").unwrap();
        assert_eq!(
            events,
            [
                SseEvent {
                    id: Some("4".into()),
                    event: Some("revocation".into()),
                    data: Some("{\"seq\":4}".into())
                },
                SseEvent {
                    id: None,
                    event: None,
                    data: None
                },
            ]
        );
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut sse = SseRewriter::default();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(sse.feed(&big, false, upper).is_err());
    }
    #[test]
    fn a_leading_byte_order_mark_is_dropped_as_a_client_drops_it() {
        // Split across chunks, so the mark is only known once its third byte arrives.
        let mut sse = SseRewriter::default();
        assert!(sse.feed(b"\xEF\xBB", false, upper).unwrap().is_empty());
        let out = sse.feed(b"\xBFdata: tools\n\n", false, upper).unwrap();
        assert_eq!(
            out,
            b"\xEF\xBB\xBFdata: TOOLS\n\n".to_vec(),
            "the first event is read as data, and the mark sent on for the client to drop"
        );
    }

    #[test]
    fn a_second_byte_order_mark_stays_behind_the_first_for_the_client_too() {
        // Only the first mark is dropped: the second is part of the first line, so that event
        // has no data. The client must see the same, so it gets the first mark to drop.
        let input = b"\xEF\xBB\xBF\xEF\xBB\xBFdata: tools\n\n";
        let mut sse = SseRewriter::default();
        let out = sse.feed(input, false, upper).unwrap();
        assert_eq!(
            out,
            input.to_vec(),
            "not a data line to the gateway or a client"
        );
        // Fed a byte at a time, the same.
        let mut sse = SseRewriter::default();
        let out: Vec<u8> = input
            .iter()
            .flat_map(|b| sse.feed(&[*b], false, upper).unwrap())
            .collect();
        assert_eq!(out, input.to_vec());
    }

    #[test]
    fn bytes_that_only_begin_like_a_mark_are_framed_as_they_are() {
        let mut sse = SseRewriter::default();
        assert!(sse.feed(b"\xEF", false, upper).unwrap().is_empty());
        let out = sse.feed(b"x\n\ndata: tools\n\n", false, upper).unwrap();
        assert_eq!(out, b"\xEFx\n\ndata: TOOLS\n\n".to_vec());
    }

    #[test]
    fn an_event_ending_the_stream_with_cr_cr_is_delivered_rewritten() {
        let mut sse = SseRewriter::default();
        assert!(
            sse.feed(b"data: tools\r\r", false, upper)
                .unwrap()
                .is_empty()
        );
        let out = sse.feed(b"", true, upper).unwrap();
        assert_eq!(out, b"data: TOOLS\n\n".to_vec());
    }

    #[test]
    fn an_event_left_incomplete_at_the_end_is_dropped_as_a_client_drops_it() {
        let mut sse = SseRewriter::default();
        assert!(sse.feed(b"data: tools\r", true, upper).unwrap().is_empty());
    }
}
