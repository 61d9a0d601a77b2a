//! The scanner: start line, header lines (folded or not) and body framing, producing a
//! [`RawMessage`]; and the validation that turns it into a [`Message`].
//!
//! Scanning allocates nothing beyond the header index, which lives inline in the message for
//! all but very large messages.

use bytes::Bytes;

use super::message::{Header, HeaderVec, Method, RawMessage, StartLine};
use super::value::{is_token, skip_lws};
use super::{HeaderName, ParseError, Span};

/// Largest message accepted, in bytes (datagram, or one framed message on a stream).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Most header fields accepted in one message (a folded header counts once).
pub const MAX_HEADERS: usize = 128;
/// Longest single line (start line or one physical header line), in bytes.
pub const MAX_LINE_LEN: usize = 8 * 1024;

/// The hard limits the parser enforces; exceeding one is a named [`ParseError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: usize,
    pub max_headers: usize,
    pub max_line_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: MAX_MESSAGE_SIZE,
            max_headers: MAX_HEADERS,
            max_line_len: MAX_LINE_LEN,
        }
    }
}

/// How the body is delimited (RFC 3261 18.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// UDP: a missing Content-Length means "to the end of the datagram"; extra bytes after
    /// the declared body are ignored.
    Datagram,
    /// TCP/TLS: Content-Length is mandatory and delimits the message.
    Stream,
}

/// The start line and headers, before the body is framed.
pub(crate) struct Head {
    pub start: StartLine,
    pub headers: HeaderVec,
    pub body_start: usize,
    pub content_length: Option<u32>,
    /// The first fault found that still leaves the message answerable (a 400 can copy its
    /// Via, From, To, Call-ID and CSeq); validation reports it.
    pub deferred: Option<ParseError>,
}

impl Head {
    /// True when Content-Length cannot be trusted to delimit the message: fatal on streams.
    pub fn content_length_broken(&self) -> bool {
        matches!(
            self.deferred,
            Some(
                ParseError::Multiple(HeaderName::ContentLength)
                    | ParseError::BadHeader(HeaderName::ContentLength)
            )
        )
    }
}

/// Where the line starting at `from` ends: `(content_end, next_line_start)`, CR stripped.
/// `Ok(None)` when no LF has arrived yet.
#[inline]
fn find_line(
    buf: &[u8],
    from: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, ParseError> {
    match memchr::memchr(b'\n', &buf[from..]) {
        Some(i) => {
            let nl = from + i;
            let end = if nl > from && buf[nl - 1] == b'\r' {
                nl - 1
            } else {
                nl
            };
            if end - from > limits.max_line_len {
                return Err(ParseError::LineTooLong {
                    limit: limits.max_line_len,
                });
            }
            Ok(Some((end, nl + 1)))
        }
        None => {
            // A line still waiting for its LF: a CR already received belongs to the line end,
            // so a line of exactly the limit is judged the same however the reads fell.
            let waiting_cr = buf.len() > from && buf[buf.len() - 1] == b'\r';
            if buf.len() - from - usize::from(waiting_cr) > limits.max_line_len {
                Err(ParseError::LineTooLong {
                    limit: limits.max_line_len,
                })
            } else {
                Ok(None)
            }
        }
    }
}

/// `SIP/1*DIGIT.1*DIGIT`, any case.
fn is_sip_version(v: &[u8]) -> bool {
    let Some(rest) = v.get(4..).filter(|_| v[..4].eq_ignore_ascii_case(b"SIP/")) else {
        return false;
    };
    let Some(dot) = memchr::memchr(b'.', rest) else {
        return false;
    };
    let (major, minor) = (&rest[..dot], &rest[dot + 1..]);
    !major.is_empty() && !minor.is_empty() && major.iter().chain(minor).all(u8::is_ascii_digit)
}

/// Parses the start line; white space inside the Request-URI is a deferred fault (the rest of
/// the line is readable, so the request can still be answered).
fn parse_start_line(
    buf: &[u8],
    start: usize,
    end: usize,
) -> Result<(StartLine, Option<ParseError>), ParseError> {
    let line = &buf[start..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
        if !is_sip_version(&line[..sp]) {
            return Err(ParseError::BadStartLine);
        }
        let code_end = line[sp + 1..]
            .iter()
            .position(|&b| b == b' ')
            .map_or(line.len(), |i| i + sp + 1);
        let code = &line[sp + 1..code_end];
        if code.len() != 3
            || !code.iter().all(u8::is_ascii_digit)
            || !(b'1'..=b'6').contains(&code[0])
        {
            return Err(ParseError::BadStatusCode);
        }
        let code = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
        let reason = Span::new((start + code_end + 1).min(end), end);
        return Ok((
            StartLine::Response {
                version: Span::new(start, start + sp),
                code,
                reason,
            },
            None,
        ));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    let sp2 = memchr::memrchr(b' ', line).ok_or(ParseError::BadStartLine)?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(ParseError::BadMethod);
    }
    let version = &line[sp2 + 1..];
    if sp2 == sp1 || !is_sip_version(version) {
        return Err(ParseError::BadStartLine);
    }
    let uri = &line[sp1 + 1..sp2];
    let mut deferred = None;
    if uri.is_empty() || uri.first() == Some(&b' ') || uri.last() == Some(&b' ') {
        // Several spaces between elements (RFC 3261 allows exactly one).
        return Err(ParseError::BadStartLine);
    }
    if uri.iter().any(|&b| b == b' ' || b == b'\t') {
        deferred = Some(ParseError::BadRequestUri);
    }
    Ok((
        StartLine::Request {
            method: Method::from_token(method),
            method_span: Span::new(start, start + sp1),
            uri: Span::new(start + sp1 + 1, start + sp2),
            version: Span::new(start + sp2 + 1, end),
        },
        deferred,
    ))
}

fn parse_content_length(value: &[u8]) -> Option<u32> {
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// Scans the start line and the header section. `Ok(None)`: the empty line that ends the
/// headers has not arrived yet.
pub(crate) fn scan_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, ParseError> {
    let len = buf.len();
    // RFC 3261 7.5: CRLFs before the start line are ignored.
    let mut pos = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(len);
    let Some((line_end, mut next)) = find_line(buf, pos, limits)? else {
        return Ok(None);
    };
    let (start, mut deferred) = parse_start_line(buf, pos, line_end)?;
    let mut headers = HeaderVec::new();
    let mut content_length = None;
    pos = next;
    loop {
        let Some((end, after)) = find_line(buf, pos, limits)? else {
            return Ok(None);
        };
        if end == pos {
            next = after;
            break;
        }
        // A continuation line with no header before it is folded into nothing: skipped, and
        // reported once the message is validated.
        let orphan = matches!(buf[pos], b' ' | b'\t');
        // Gather folded continuation lines (CRLF followed by SP or HT).
        let (mut value_end, mut line_next) = (end, after);
        loop {
            match buf.get(line_next) {
                None => return Ok(None),
                Some(b' ' | b'\t') => {
                    let Some((e, n)) = find_line(buf, line_next, limits)? else {
                        return Ok(None);
                    };
                    value_end = e;
                    line_next = n;
                }
                Some(_) => break,
            }
        }
        let colon = memchr::memchr(b':', &buf[pos..value_end]).map(|i| i + pos);
        let mut name_end = colon.unwrap_or(pos);
        while name_end > pos && matches!(buf[name_end - 1], b' ' | b'\t') {
            name_end -= 1;
        }
        let name_bytes = &buf[pos..name_end];
        let (Some(colon), false, false) = (
            colon,
            orphan,
            name_bytes.is_empty() || !name_bytes.iter().all(|&b| is_token(b)),
        ) else {
            // Not a header field: skip the line, keep scanning, report it at validation.
            deferred.get_or_insert(ParseError::BadHeaderLine);
            pos = line_next;
            continue;
        };
        let value_start = skip_lws(buf, colon + 1, value_end);
        let mut v_end = value_end;
        while v_end > value_start && matches!(buf[v_end - 1], b' ' | b'\t' | b'\r' | b'\n') {
            v_end -= 1;
        }
        if headers.len() == limits.max_headers {
            return Err(ParseError::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        let name = HeaderName::classify(name_bytes);
        if name == HeaderName::ContentLength {
            // A broken Content-Length is answerable over UDP (the datagram delimits the
            // message) and fatal on streams (the framer refuses it).
            match (
                content_length,
                parse_content_length(&buf[value_start..v_end]),
            ) {
                (Some(_), _) => {
                    deferred.get_or_insert(ParseError::Multiple(HeaderName::ContentLength));
                }
                (None, None) => {
                    deferred.get_or_insert(ParseError::BadHeader(HeaderName::ContentLength));
                }
                (None, Some(cl)) => content_length = Some(cl),
            }
        }
        headers.push(Header {
            name,
            name_span: Span::new(pos, name_end),
            value: Span::new(value_start, v_end),
            line: Span::new(pos, line_next),
        });
        pos = line_next;
    }
    Ok(Some(Head {
        start,
        headers,
        body_start: next,
        content_length,
        deferred,
    }))
}

/// Frames the body of a scanned head over the whole of `buf`.
pub(crate) fn frame_body(
    buf: Bytes,
    head: Head,
    framing: Framing,
) -> Result<RawMessage, ParseError> {
    let available = buf.len() - head.body_start;
    let mut deferred = head.deferred;
    let body_len = match (head.content_length, framing) {
        _ if head.content_length_broken() => available,
        (Some(cl), _) if cl as usize > available => {
            // Over UDP the datagram still delimits the message: answerable with a 400.
            deferred.get_or_insert(ParseError::ContentLengthMismatch {
                declared: cl as usize,
                available,
            });
            available
        }
        (Some(cl), _) => cl as usize,
        (None, Framing::Datagram) => available,
        (None, Framing::Stream) => return Err(ParseError::Missing(HeaderName::ContentLength)),
    };
    Ok(RawMessage {
        body: Span::new(head.body_start, head.body_start + body_len),
        buf,
        start: head.start,
        headers: head.headers,
        content_length: head.content_length,
        deferred,
    })
}

/// Scans a complete message held in `buf`.
pub(crate) fn scan(
    buf: Bytes,
    framing: Framing,
    limits: &Limits,
) -> Result<RawMessage, ParseError> {
    if buf.len() > limits.max_message_size {
        return Err(ParseError::TooLarge {
            size: buf.len(),
            limit: limits.max_message_size,
        });
    }
    let head = scan_head(&buf, limits)?.ok_or(ParseError::Truncated)?;
    frame_body(buf, head, framing)
}
