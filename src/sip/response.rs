//! Responses the edge originates: copies Via, From, To (adding a To-tag), Call-ID and CSeq
//! from the request as received, and ends with `Content-Length: 0`.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use super::edit::{via_received_splices, write_spliced, Insert, Splice, Splices};
use super::message::RawMessage;
use super::value::{parse_first_via, parse_name_addr, Rport};
use super::HeaderName;

/// The standard reason phrase for the codes the edge sends; "Unknown" otherwise.
pub const fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

/// Where a response to `request` goes over an unreliable transport (RFC 3261 18.2.2 with
/// RFC 3581): to the source address when the client asked for `rport`, else to the source IP
/// (which is what `received` records) at the sent-by port, 5060 when none is given. A request
/// whose top Via cannot be read is answered at its source.
pub fn response_destination(request: &RawMessage, source: SocketAddr) -> SocketAddr {
    let buf = request.bytes().as_ref();
    let top_via = request
        .headers_named(HeaderName::Via)
        .next()
        .and_then(|h| parse_first_via(buf, h.value));
    match top_via {
        Some(via) if via.rport == Rport::Absent => {
            SocketAddr::new(source.ip(), via.port.unwrap_or(5060))
        }
        _ => source,
    }
}

/// Builds a response to a request (validated or only scanned, so that a malformed request can
/// still get its 400).
#[derive(Clone, Debug)]
pub struct ResponseBuilder<'a> {
    request: &'a RawMessage,
    code: u16,
    reason: &'a str,
    to_tag: Option<&'a [u8]>,
    source: Option<SocketAddr>,
    headers: SmallVec<[(&'a str, &'a [u8]); 4]>,
}

impl<'a> ResponseBuilder<'a> {
    pub fn new(request: &'a RawMessage, code: u16) -> Self {
        ResponseBuilder {
            request,
            code,
            reason: reason_phrase(code),
            to_tag: None,
            source: None,
            headers: SmallVec::new(),
        }
    }

    /// A reason phrase other than the standard one (CR and LF are written as spaces).
    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = reason;
        self
    }

    /// The To-tag to add when the request's To has none (never on a 100).
    pub fn to_tag(mut self, tag: &'a [u8]) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// The address the request came from: the top Via gets `received`/`rport` as the
    /// transport layer would have added them (RFC 3261 18.2.1, RFC 3581).
    pub fn source(mut self, source: SocketAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// An extra header field (`Allow`, `Retry-After`, `Unsupported`...).
    pub fn header(mut self, name: &'a str, value: &'a [u8]) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn write(&self, out: &mut BytesMut) {
        let req = self.request;
        let buf = req.bytes().as_ref();
        out.reserve(512);
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(itoa::Buffer::new().format(self.code).as_bytes());
        out.extend_from_slice(b" ");
        out.extend(
            self.reason
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");

        let mut top_via = true;
        for h in req.headers_named(HeaderName::Via) {
            let mut splices = Splices::new();
            if let (true, Some(source)) = (top_via, self.source) {
                if let Some(via) = parse_first_via(buf, h.value) {
                    via_received_splices(&via, source, &mut splices);
                    splices.sort_by_key(|s| s.start);
                }
            }
            top_via = false;
            write_spliced(
                buf,
                h.line.start as usize,
                h.line.end as usize,
                &splices,
                out,
            );
        }
        for name in [
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
        ] {
            let Some(h) = req.headers_named(name).next() else {
                continue;
            };
            let mut splices = Splices::new();
            if let (HeaderName::To, Some(tag), false) = (name, self.to_tag, self.code == 100) {
                if parse_name_addr(buf, h.value).is_some_and(|to| to.tag.is_none()) {
                    let at = h.value.end as usize;
                    for piece in [&b";tag="[..], tag] {
                        splices.push(Splice {
                            start: at,
                            end: at,
                            insert: Insert::Bytes(piece),
                        });
                    }
                }
            }
            write_spliced(
                buf,
                h.line.start as usize,
                h.line.end as usize,
                &splices,
                out,
            );
        }
        if self.code == 100 {
            // RFC 3261 8.2.6.1: a 100 carries the request's Timestamp.
            if let Some(h) = req
                .headers()
                .iter()
                .find(|h| h.name_span.slice(buf).eq_ignore_ascii_case(b"Timestamp"))
            {
                out.extend_from_slice(h.line.slice(buf));
            }
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    }

    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Framing, Limits, Message};

    const OPTIONS: &str = "OPTIONS sip:edge.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
f: <sip:pbx@example.com>;tag=abc\r\n\
t: <sip:edge.example.com>\r\n\
i: opt-1@10.0.0.1\r\n\
CSeq: 7 OPTIONS\r\n\
Timestamp: 54\r\n\
Max-Forwards: 70\r\n\
\r\n";

    fn raw(text: &str) -> RawMessage {
        RawMessage::scan(
            Bytes::copy_from_slice(text.as_bytes()),
            Framing::Datagram,
            &Limits::default(),
        )
        .expect("scans")
    }

    #[test]
    fn copies_headers_adds_tag_and_received() {
        let req = raw(OPTIONS);
        let resp = ResponseBuilder::new(&req, 200)
            .to_tag(b"edge1")
            .source("10.0.0.1:40001".parse().unwrap())
            .header("Allow", b"INVITE, ACK, BYE, CANCEL, OPTIONS")
            .build();
        assert_eq!(
            std::str::from_utf8(&resp).unwrap(),
            "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=40001;received=10.0.0.1\r\n\
Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\n\
f: <sip:pbx@example.com>;tag=abc\r\n\
t: <sip:edge.example.com>;tag=edge1\r\n\
i: opt-1@10.0.0.1\r\n\
CSeq: 7 OPTIONS\r\n\
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
        );
        let parsed = Message::parse(resp).expect("response parses");
        assert_eq!(parsed.status(), Some(200));
        assert_eq!(parsed.to().tag(), Some(&b"edge1"[..]));
    }

    #[test]
    fn trying_keeps_to_untagged_and_copies_timestamp() {
        let req = raw(OPTIONS);
        let resp = ResponseBuilder::new(&req, 100).to_tag(b"x").build();
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.starts_with("SIP/2.0 100 Trying\r\n"));
        assert!(text.contains("t: <sip:edge.example.com>\r\n"));
        assert!(text.contains("Timestamp: 54\r\n"));
    }

    #[test]
    fn existing_tag_kept_and_reason_sanitised() {
        let req = raw(&OPTIONS.replace(
            "t: <sip:edge.example.com>",
            "t: <sip:edge.example.com>;tag=have",
        ));
        let resp = ResponseBuilder::new(&req, 400)
            .reason("Bad\r\nCSeq")
            .to_tag(b"new")
            .build();
        let text = std::str::from_utf8(&resp).unwrap();
        assert!(text.starts_with("SIP/2.0 400 Bad  CSeq\r\n"));
        assert!(text.contains(";tag=have\r\n") && !text.contains("tag=new"));
    }

    #[test]
    fn response_destination_follows_rport_and_sent_by() {
        let source: SocketAddr = "10.0.0.1:40001".parse().unwrap();
        assert_eq!(
            response_destination(&raw(OPTIONS), source),
            source,
            "rport asked"
        );
        let no_rport = OPTIONS.replace("5060;branch=z9hG4bKa;rport", "5070;branch=z9hG4bKa");
        assert_eq!(
            response_destination(&raw(&no_rport), source),
            "10.0.0.1:5070".parse().unwrap()
        );
        let no_port = OPTIONS.replace(
            "10.0.0.1:5060;branch=z9hG4bKa;rport",
            "pbx.example.com;branch=z9hG4bKa",
        );
        assert_eq!(
            response_destination(&raw(&no_port), source),
            "10.0.0.1:5060".parse().unwrap()
        );
    }

    #[test]
    fn all_codes_the_edge_sends() {
        let req = raw(OPTIONS);
        for code in [100, 200, 400, 403, 404, 405, 416, 420, 483, 503, 505] {
            let resp = ResponseBuilder::new(&req, code).to_tag(b"t").build();
            let parsed = Message::parse(resp).expect("valid response");
            assert_eq!(parsed.status(), Some(code));
            assert_eq!(parsed.reason(), reason_phrase(code).as_bytes());
            assert_eq!(parsed.call_id(), b"opt-1@10.0.0.1");
            assert_eq!(parsed.cseq().seq, 7);
        }
    }

    #[test]
    fn malformed_request_still_answerable() {
        // CSeq method mismatch: validation fails, but the 400 copies what is there.
        let text = OPTIONS.replace("CSeq: 7 OPTIONS", "CSeq: 7 INVITE");
        let rejected = Message::validate(raw(&text)).expect_err("mismatch");
        let resp = ResponseBuilder::new(&rejected.raw, 400)
            .reason(&rejected.error.to_string())
            .build();
        let parsed = Message::parse(resp).expect("valid response");
        assert_eq!(parsed.reason(), b"CSeq Method Mismatch");
        assert_eq!(parsed.cseq().method_bytes, b"INVITE");
    }
}
