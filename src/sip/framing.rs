//! Stream framing for TCP and TLS: bytes in, whole messages out (RFC 3261 18.3).
//!
//! Content-Length is mandatory and delimits each message. CRLFs between messages are skipped
//! (RFC 3261 7.5); a double CRLF is a keep-alive ping that the caller answers with a single
//! CRLF (RFC 5626 3.5.1). "Not yet" is `Ok(None)`; an error means the stream can no longer be
//! framed and the connection should be closed. A message that frames but fails validation
//! is not a framing error: it is returned, and the caller answers it.

use bytes::{Buf, BytesMut};

use super::message::RawMessage;
use super::parse::{frame_body, scan_head, Framing, Head, Limits};
use super::{HeaderName, ParseError};

/// One unit taken off a stream.
// The message is returned by value on purpose: boxing it would add an allocation per message,
// and a frame is moved once, straight to its consumer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Frame {
    /// A whole message, framed by its Content-Length (not yet validated).
    Message(RawMessage),
    /// A double-CRLF keep-alive; answer with a single CRLF.
    Ping,
}

/// Accumulates stream bytes and cuts them into messages.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    /// How far the search for the end of the header section has got.
    searched: usize,
    /// The head of the message being received and its total length, once known.
    pending: Option<(Head, usize)>,
    failed: Option<ParseError>,
}

impl std::fmt::Debug for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Head")
            .field("body_start", &self.body_start)
            .finish_non_exhaustive()
    }
}

const PING: &[u8] = b"\r\n\r\n";

/// Where the header section ends (just past its empty line), by the scanner's own rule: a
/// line end (LF, with or without CR) followed by an empty line. `Err(resume)` says where to
/// look again once more bytes have arrived.
fn header_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    let mut i = from;
    while let Some(offset) = memchr::memchr(b'\n', &buf[i..]) {
        let lf = i + offset;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Ok(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Ok(lf + 3),
            // Cannot tell yet whether an empty line follows.
            (None, _) | (Some(b'\r'), None) => return Err(lf),
            _ => i = lf + 1,
        }
    }
    Err(buf.len())
}

impl StreamFramer {
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: BytesMut::new(),
            limits,
            searched: 0,
            pending: None,
            failed: None,
        }
    }

    /// The receive buffer, for reading into directly (`read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame: `Ok(None)` until one is complete; `Err` once the stream is broken
    /// (every later call returns the same error).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.advance() {
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
            ok => ok,
        }
    }

    fn advance(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.pending.is_none() {
            // Between messages: keep-alives and stray line ends.
            while let Some(&first) = self.buf.first() {
                if first == b'\n' {
                    self.buf.advance(1);
                } else if first == b'\r' {
                    let n = self.buf.len().min(PING.len());
                    if self.buf[..n] != PING[..n] {
                        if self.buf.get(1) == Some(&b'\n') {
                            self.buf.advance(2);
                            continue;
                        }
                        break;
                    }
                    if n < PING.len() {
                        return Ok(None);
                    }
                    self.buf.advance(PING.len());
                    return Ok(Some(Frame::Ping));
                } else {
                    break;
                }
            }
            // Only the first `max_message_size` bytes may hold the header section: looking no
            // further makes the outcome the same whichever way the reads were split.
            let max = self.limits.max_message_size;
            let window = &self.buf[..self.buf.len().min(max)];
            let too_large = ParseError::TooLarge {
                size: max + 1,
                limit: max,
            };
            let Some(start) = window.iter().position(|&b| b != b'\r' && b != b'\n') else {
                return if self.buf.len() >= max {
                    Err(too_large)
                } else {
                    Ok(None)
                };
            };
            let end = match header_end(window, self.searched.max(start)) {
                Ok(end) => end,
                Err(resume) => {
                    self.searched = resume;
                    if self.buf.len() < max {
                        return Ok(None);
                    }
                    // The header section cannot end within the limit. Report a fault the
                    // scanner finds in the window first, as a read of it all at once would.
                    scan_head(window, &self.limits)?;
                    return Err(too_large);
                }
            };
            // The head is complete: scan exactly it, not the bytes that follow.
            let Some(head) = scan_head(&self.buf[..end], &self.limits)? else {
                return Err(ParseError::Truncated);
            };
            if head.content_length_broken() {
                let broken = ParseError::BadHeader(HeaderName::ContentLength);
                return Err(head.deferred.unwrap_or(broken));
            }
            let content_length = head
                .content_length
                .ok_or(ParseError::Missing(HeaderName::ContentLength))?;
            let total = head.body_start + content_length as usize;
            if total > self.limits.max_message_size {
                return Err(ParseError::TooLarge {
                    size: total,
                    limit: self.limits.max_message_size,
                });
            }
            self.pending = Some((head, total));
        }
        let Some((_, total)) = self.pending.as_ref() else {
            return Ok(None);
        };
        if self.buf.len() < *total {
            return Ok(None);
        }
        let Some((head, total)) = self.pending.take() else {
            return Ok(None);
        };
        let bytes = self.buf.split_to(total).freeze();
        self.searched = 0;
        frame_body(bytes, head, Framing::Stream).map(|m| Some(Frame::Message(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK1\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 5\r\n\r\nhello";
    const B: &str = "BYE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bK2\r\nt: <sip:bob@example.com>\r\nf: <sip:a@example.com>;tag=1\r\ni: c1\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n";

    /// Feeds `chunks` and collects every frame as text ("PING" for keep-alives).
    fn frames(chunks: &[&[u8]]) -> Result<Vec<String>, ParseError> {
        let mut f = StreamFramer::new(Limits::default());
        let mut out = Vec::new();
        for chunk in chunks {
            f.extend(chunk);
            while let Some(frame) = f.next_frame()? {
                out.push(match frame {
                    Frame::Message(m) => String::from_utf8_lossy(m.bytes()).into_owned(),
                    Frame::Ping => "PING".to_owned(),
                });
            }
        }
        Ok(out)
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for text in [A, B] {
            let bytes = text.as_bytes();
            for cut in 0..bytes.len() {
                let mut f = StreamFramer::new(Limits::default());
                f.extend(&bytes[..cut]);
                assert!(
                    matches!(f.next_frame(), Ok(None)),
                    "prefix {cut} of {text:?}"
                );
            }
            assert_eq!(frames(&[bytes]).unwrap(), vec![text.to_owned()]);
        }
    }

    #[test]
    fn every_split_of_a_stream_yields_the_same_messages() {
        let stream = format!("{A}\r\n\r\n{B}\r\n{A}");
        let want = vec![A.to_owned(), "PING".to_owned(), B.to_owned(), A.to_owned()];
        let bytes = stream.as_bytes();
        assert_eq!(frames(&[bytes]).unwrap(), want);
        for i in 0..=bytes.len() {
            assert_eq!(
                frames(&[&bytes[..i], &bytes[i..]]).unwrap(),
                want,
                "split at {i}"
            );
        }
        for i in (0..bytes.len()).step_by(7) {
            for j in (i..bytes.len()).step_by(13) {
                assert_eq!(
                    frames(&[&bytes[..i], &bytes[i..j], &bytes[j..]]).unwrap(),
                    want,
                    "split at {i},{j}"
                );
            }
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(frames(&bytewise).unwrap(), want);
    }

    #[test]
    fn missing_content_length_breaks_the_stream() {
        let text = A.replace("Content-Length: 5\r\n", "");
        let mut f = StreamFramer::new(Limits::default());
        f.extend(text.as_bytes());
        assert_eq!(
            f.next_frame().unwrap_err(),
            ParseError::Missing(HeaderName::ContentLength)
        );
        f.extend(B.as_bytes());
        assert!(f.next_frame().is_err(), "a broken stream stays broken");
    }

    #[test]
    fn garbage_and_oversize() {
        assert_eq!(
            frames(&[b"\x16\x03\x01 not sip\r\n\r\n"]).unwrap_err(),
            ParseError::BadMethod
        );
        assert_eq!(
            frames(&[b"GARBAGE\r\n\r\n"]).unwrap_err(),
            ParseError::BadStartLine
        );
        let limits = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let mut f = StreamFramer::new(limits);
        f.extend(&[b'A'; 101]);
        assert!(matches!(
            f.next_frame(),
            Err(ParseError::TooLarge { .. }) | Err(ParseError::LineTooLong { .. })
        ));
        let mut f = StreamFramer::new(limits);
        f.extend(
            A.replace("Content-Length: 5", "Content-Length: 500")
                .as_bytes(),
        );
        assert!(matches!(f.next_frame(), Err(ParseError::TooLarge { .. })));
    }

    #[test]
    fn invalid_but_framed_message_does_not_break_the_stream() {
        let bad = A.replace("CSeq: 1 INVITE", "CSeq: x INVITE");
        let got = frames(&[bad.as_bytes(), B.as_bytes()]).unwrap();
        assert_eq!(got, vec![bad.clone(), B.to_owned()]);
    }

    /// Feeds `stream` whole and in every two-piece split; every run must give the same
    /// outcome (frames, then the final error if any). The fuzzer's `stream_framing`
    /// invariant, on the inputs that once broke it.
    fn same_however_split(stream: &[u8], limits: Limits) -> Vec<Result<String, ParseError>> {
        let run = |cuts: &[usize]| {
            let mut f = StreamFramer::new(limits);
            let mut out = Vec::new();
            let mut from = 0;
            for &cut in cuts.iter().chain([&stream.len()]) {
                f.extend(&stream[from..cut]);
                from = cut;
                loop {
                    match f.next_frame() {
                        Ok(Some(Frame::Message(m))) => {
                            out.push(Ok(String::from_utf8_lossy(m.bytes()).into_owned()))
                        }
                        Ok(Some(Frame::Ping)) => out.push(Ok("PING".to_owned())),
                        Ok(None) => break,
                        Err(e) => {
                            out.push(Err(e));
                            return out;
                        }
                    }
                }
            }
            out
        };
        let whole = run(&[]);
        for cut in 1..stream.len() {
            assert_eq!(run(&[cut]), whole, "split at {cut}");
        }
        whole
    }

    fn small() -> Limits {
        Limits {
            max_message_size: 1024,
            max_headers: 24,
            max_line_len: 256,
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_frames_even_split_between_cr_and_lf() {
        let stream = format!(
            "OPTIONS sip:a SIP/2.0\r\nX: {}\r\nl: 0\r\n\r\n",
            "a".repeat(253)
        );
        assert!(same_however_split(stream.as_bytes(), small())[0].is_ok());
    }

    #[test]
    fn headers_ended_by_bare_lf_frame_like_the_scanner_reads_them() {
        let stream = b"OPTIONS sip:a SIP/2.0\r\nl: 3\n\r\nabcOPTIONS sip:b SIP/2.0\r\nl: 0\r\n\r\n";
        let frames = same_however_split(stream, small());
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(frames.iter().all(Result::is_ok));
    }

    #[test]
    fn an_oversized_head_gives_one_error_however_split() {
        let head = format!(
            "OPTIONS sip:a SIP/2.0\r\n{}",
            format!("X: {}\r\n", "a".repeat(200)).repeat(5)
        );
        for stream in [format!("{head}\r\n"), format!("{head}l: 0\r\n\r\n")] {
            let frames = same_however_split(stream.as_bytes(), small());
            assert_eq!(
                frames,
                vec![Err(ParseError::TooLarge {
                    size: 1025,
                    limit: 1024
                })]
            );
        }
    }
}
