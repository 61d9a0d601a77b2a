//! Messages: [`RawMessage`] (scanned: start line, header index, body) and [`Message`]
//! (validated: the fields a proxy relies on are known to be present and well formed), with
//! borrowed, typed views of those fields.

use std::net::IpAddr;
use std::ops::Deref;

use bytes::Bytes;
use smallvec::SmallVec;

use super::parse::{self, Framing, Limits};
use super::uri::{parse_uri, Scheme, Uri, UriSpans};
use super::value::{
    parse_cseq, parse_first_via, parse_name_addr, parse_via, CommaSplit, NameAddrSpans, Rport,
    ViaSpans,
};
use super::{HeaderName, ParseError, Span};

/// Header index capacity kept inline: a typical INVITE has 10 to 20 headers.
const INLINE_HEADERS: usize = 24;
pub(crate) type HeaderVec = SmallVec<[Header; INLINE_HEADERS]>;

/// One header field: its classified name and spans for the name, the value (trimmed, folds
/// included as received) and the whole field with its line terminator(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub name_span: Span,
    pub value: Span,
    pub line: Span,
}

/// SIP methods. Methods are case-sensitive (RFC 3261 7.1); anything else is `Other`, which a
/// proxy forwards like any request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other,
}

impl Method {
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// The method name; `None` for `Other` (read the message's own bytes instead).
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Info => "INFO",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => return None,
        })
    }
}

/// The first line of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        code: u16,
        reason: Span,
    },
}

/// Via transports (RFC 3261, 4168, 7118); others are kept as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    Other,
}

impl Transport {
    pub fn from_token(token: &[u8]) -> Transport {
        [
            (&b"UDP"[..], Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ]
        .into_iter()
        .find_map(|(name, t)| name.eq_ignore_ascii_case(token).then_some(t))
        .unwrap_or(Transport::Other)
    }
}

// === impl RawMessage ===

/// A scanned message: the received bytes and an index into them. Header values are not yet
/// interpreted, so this is what a proxy holds when it must answer 400 to a malformed request.
#[derive(Clone, Debug)]
pub struct RawMessage {
    pub(crate) buf: Bytes,
    pub(crate) start: StartLine,
    pub(crate) headers: HeaderVec,
    pub(crate) body: Span,
    pub(crate) content_length: Option<u32>,
    /// A fault found while scanning that leaves the message answerable; validation reports
    /// it first.
    pub(crate) deferred: Option<ParseError>,
}

impl RawMessage {
    /// Scans one complete message (a datagram, or a message cut out of a stream).
    pub fn scan(buf: Bytes, framing: Framing, limits: &Limits) -> Result<RawMessage, ParseError> {
        parse::scan(buf, framing, limits)
    }

    /// The received bytes, all of them (bytes past the body included).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method; `None` for responses.
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method as written; empty for responses.
    pub fn method_bytes(&self) -> &[u8] {
        match self.start {
            StartLine::Request { method_span, .. } => method_span.slice(&self.buf),
            StartLine::Response { .. } => b"",
        }
    }

    /// The response status code; `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase as received; empty for requests.
    pub fn reason(&self) -> &[u8] {
        match self.start {
            StartLine::Response { reason, .. } => reason.slice(&self.buf),
            StartLine::Request { .. } => b"",
        }
    }

    /// Every header field in order of appearance.
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The bytes `span` covers in this message.
    pub fn slice(&self, span: Span) -> &[u8] {
        span.slice(&self.buf)
    }

    /// Header fields with a known name, in order.
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = &Header> + '_ {
        self.headers.iter().filter(move |h| h.name == name)
    }

    /// The value of the first header field with a known name.
    pub fn header(&self, name: HeaderName) -> Option<&[u8]> {
        self.headers_named(name)
            .next()
            .map(|h| h.value.slice(&self.buf))
    }

    /// Values of header fields matched by their name as written, case-insensitively. For known
    /// headers prefer [`RawMessage::headers_named`], which also knows the compact forms.
    pub fn header_values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let kind = HeaderName::classify(name);
        self.headers
            .iter()
            .filter(move |h| {
                h.name == kind
                    && (kind != HeaderName::Other
                        || h.name_span.slice(&self.buf).eq_ignore_ascii_case(name))
            })
            .map(|h| h.value.slice(&self.buf))
    }

    /// Every comma-separated element of every header field named `name`.
    pub(crate) fn elements(&self, name: HeaderName) -> impl Iterator<Item = Span> + '_ {
        self.headers_named(name)
            .flat_map(|h| CommaSplit::new(&self.buf, h.value))
    }

    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    pub fn body(&self) -> &[u8] {
        self.body.slice(&self.buf)
    }

    /// Offset of the empty line that ends the header section.
    pub(crate) fn headers_end(&self) -> usize {
        let mut end = self.body.start as usize;
        for terminator in [b'\n', b'\r'] {
            if end > 0 && self.buf[end - 1] == terminator {
                end -= 1;
            }
        }
        end
    }
}

// === impl Message ===

/// A message whose proxy-critical fields were checked: start line, Request-URI, top Via,
/// From, To, Call-ID, CSeq (matching the method), Max-Forwards and Content-Length. The typed
/// views below cannot fail.
#[derive(Clone, Debug)]
pub struct Message {
    raw: RawMessage,
    pub(crate) uri: Option<UriSpans>,
    pub(crate) via: ViaSpans,
    pub(crate) via_header: usize,
    pub(crate) from: NameAddrSpans,
    pub(crate) to: NameAddrSpans,
    pub(crate) call_id: Span,
    pub(crate) cseq: (u32, Method, Span),
    pub(crate) max_forwards: Option<(u8, usize)>,
}

/// A message that scanned but failed validation, kept so that a 400 (or 505) can be built
/// from its headers.
#[derive(Debug)]
pub struct Rejected {
    pub error: ParseError,
    pub raw: Box<RawMessage>,
}

impl Deref for Message {
    type Target = RawMessage;

    fn deref(&self) -> &RawMessage {
        &self.raw
    }
}

/// The single header field `name`, refusing a second one.
fn single(raw: &RawMessage, name: HeaderName) -> Result<(usize, &Header), ParseError> {
    let mut found = raw
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.name == name);
    let first = found.next().ok_or(ParseError::Missing(name))?;
    match found.next() {
        Some(_) => Err(ParseError::Multiple(name)),
        None => Ok(first),
    }
}

fn single_name_addr(raw: &RawMessage, name: HeaderName) -> Result<NameAddrSpans, ParseError> {
    let (_, h) = single(raw, name)?;
    parse_name_addr(&raw.buf, h.value).ok_or(ParseError::BadHeader(name))
}

impl Message {
    /// Parses a datagram with the default limits.
    pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
        Message::parse_with(buf, Framing::Datagram, &Limits::default())
    }

    pub fn parse_with(
        buf: Bytes,
        framing: Framing,
        limits: &Limits,
    ) -> Result<Message, ParseError> {
        let raw = RawMessage::scan(buf, framing, limits)?;
        Message::validate(raw).map_err(|rejected| rejected.error)
    }

    /// Checks the fields a proxy relies on. On failure the scanned message comes back with
    /// the error, so the caller can still answer it.
    pub fn validate(raw: RawMessage) -> Result<Message, Rejected> {
        match Message::check(&raw) {
            Ok(parts) => Ok(parts.into_message(raw)),
            Err(error) => Err(Rejected {
                error,
                raw: Box::new(raw),
            }),
        }
    }

    fn check(raw: &RawMessage) -> Result<Checked, ParseError> {
        if let Some(error) = raw.deferred {
            return Err(error);
        }
        let buf = &raw.buf;
        let (version, uri) = match raw.start {
            StartLine::Request { uri, version, .. } => {
                let uri = parse_uri(buf, uri).ok_or(ParseError::BadRequestUri)?;
                // Headers (`?Route=...`) have no place in a Request-URI (RFC 3261 19.1.1), and a
                // proxy must not forward them there (RFC 4475 3.1.2.11); every byte we do not
                // edit is forwarded, so refuse the request instead.
                if uri.headers.is_some() {
                    return Err(ParseError::BadRequestUri);
                }
                (version, Some(uri))
            }
            StartLine::Response { version, .. } => (version, None),
        };
        if !version.slice(buf).eq_ignore_ascii_case(b"SIP/2.0") {
            return Err(ParseError::VersionNotSupported);
        }
        let (via_header, via_h) = raw
            .headers
            .iter()
            .enumerate()
            .find(|(_, h)| h.name == HeaderName::Via)
            .ok_or(ParseError::Missing(HeaderName::Via))?;
        let via =
            parse_first_via(buf, via_h.value).ok_or(ParseError::BadHeader(HeaderName::Via))?;
        let (_, call_id) = single(raw, HeaderName::CallId)?;
        let call_id = call_id.value;
        if call_id.is_empty() || call_id.slice(buf).iter().any(|&b| b <= b' ') {
            return Err(ParseError::BadHeader(HeaderName::CallId));
        }
        let (_, cseq_h) = single(raw, HeaderName::CSeq)?;
        let (seq, method_span) =
            parse_cseq(buf, cseq_h.value).ok_or(ParseError::BadHeader(HeaderName::CSeq))?;
        let cseq_method = method_span.slice(buf);
        if let StartLine::Request {
            method_span: request_method,
            ..
        } = raw.start
        {
            if request_method.slice(buf) != cseq_method {
                return Err(ParseError::CSeqMethodMismatch);
            }
        }
        let from = single_name_addr(raw, HeaderName::From)?;
        let to = single_name_addr(raw, HeaderName::To)?;
        let max_forwards = match single(raw, HeaderName::MaxForwards) {
            Err(ParseError::Missing(_)) => None,
            Err(e) => return Err(e),
            Ok((index, h)) => {
                let digits = h.value.slice(buf);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(ParseError::BadHeader(HeaderName::MaxForwards));
                }
                // Values above 255 are clamped to 255, as Kamailio's maxfwd module does.
                let value = digits
                    .iter()
                    .fold(0u32, |n, &d| (n * 10 + u32::from(d - b'0')).min(1000));
                Some((value.min(255) as u8, index))
            }
        };
        Ok(Checked {
            uri,
            via,
            via_header,
            from,
            to,
            call_id,
            cseq: (seq, Method::from_token(cseq_method), method_span),
            max_forwards,
        })
    }

    /// The scanned message underneath.
    pub fn raw(&self) -> &RawMessage {
        &self.raw
    }

    pub fn into_raw(self) -> RawMessage {
        self.raw
    }

    /// The Request-URI; `None` for responses.
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.uri.map(|s| Uri {
            buf: &self.raw.buf,
            s,
        })
    }

    /// The first value of the first Via header field.
    pub fn top_via(&self) -> Via<'_> {
        Via {
            buf: &self.raw.buf,
            s: self.via,
        }
    }

    /// Every Via value, top first; a malformed one below the top yields an error.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        let buf = &self.raw.buf;
        self.raw.elements(HeaderName::Via).map(move |e| {
            parse_via(buf, e)
                .map(|s| Via { buf, s })
                .ok_or(ParseError::BadHeader(HeaderName::Via))
        })
    }

    pub fn call_id(&self) -> &[u8] {
        self.call_id.slice(&self.raw.buf)
    }

    pub fn cseq(&self) -> CSeq<'_> {
        let (seq, method, span) = self.cseq;
        CSeq {
            seq,
            method,
            method_bytes: span.slice(&self.raw.buf),
        }
    }

    pub fn from(&self) -> NameAddr<'_> {
        NameAddr {
            buf: &self.raw.buf,
            s: self.from,
        }
    }

    pub fn to(&self) -> NameAddr<'_> {
        NameAddr {
            buf: &self.raw.buf,
            s: self.to,
        }
    }

    /// Max-Forwards, clamped to 255; `None` when absent.
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards.map(|(value, _)| value)
    }

    /// Route entries across all Route header fields, top first.
    pub fn routes(&self) -> NameAddrs<'_> {
        NameAddrs::new(&self.raw, HeaderName::Route)
    }

    /// Record-Route entries across all Record-Route header fields, top first.
    pub fn record_routes(&self) -> NameAddrs<'_> {
        NameAddrs::new(&self.raw, HeaderName::RecordRoute)
    }

    /// Contact entries; a `Contact: *` yields nothing (check [`Message::contact_is_star`]).
    pub fn contacts(&self) -> NameAddrs<'_> {
        NameAddrs::new(&self.raw, HeaderName::Contact)
    }

    pub fn contact_is_star(&self) -> bool {
        self.raw.header(HeaderName::Contact) == Some(b"*")
    }
}

/// What [`Message::check`] established, before it is joined to the raw message.
struct Checked {
    uri: Option<UriSpans>,
    via: ViaSpans,
    via_header: usize,
    from: NameAddrSpans,
    to: NameAddrSpans,
    call_id: Span,
    cseq: (u32, Method, Span),
    max_forwards: Option<(u8, usize)>,
}

impl Checked {
    fn into_message(self, raw: RawMessage) -> Message {
        Message {
            raw,
            uri: self.uri,
            via: self.via,
            via_header: self.via_header,
            from: self.from,
            to: self.to,
            call_id: self.call_id,
            cseq: self.cseq,
            max_forwards: self.max_forwards,
        }
    }
}

// === views ===

/// One Via value.
#[derive(Clone, Copy, Debug)]
pub struct Via<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) s: ViaSpans,
}

impl<'a> Via<'a> {
    /// The whole via-parm as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.s.element.slice(self.buf)
    }

    pub fn transport(&self) -> Transport {
        Transport::from_token(self.s.transport.slice(self.buf))
    }

    pub fn transport_bytes(&self) -> &'a [u8] {
        self.s.transport.slice(self.buf)
    }

    /// The sent-by host as written (IPv6 with brackets).
    pub fn host(&self) -> &'a [u8] {
        self.s.host.slice(self.buf)
    }

    /// The sent-by host when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.s.ip
    }

    pub fn port(&self) -> Option<u16> {
        self.s.port
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        self.s.branch.map(|s| s.slice(self.buf))
    }

    /// True when the branch carries the RFC 3261 magic cookie and something after it: a bare
    /// `z9hG4bK` (RFC 4475 badbranch) is not unique, so it is no transaction id.
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > 7 && b.starts_with(b"z9hG4bK"))
    }

    pub fn received(&self) -> Option<&'a [u8]> {
        self.s.received.map(|s| s.slice(self.buf))
    }

    pub fn rport(&self) -> Rport {
        self.s.rport
    }
}

/// CSeq: sequence number and method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method,
    pub method_bytes: &'a [u8],
}

/// A name-addr or addr-spec with its header parameters (From, To, Route, Contact...).
#[derive(Clone, Copy, Debug)]
pub struct NameAddr<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) s: NameAddrSpans,
}

impl<'a> NameAddr<'a> {
    /// The whole element as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.s.element.slice(self.buf)
    }

    /// The display name as written (quotes included when quoted).
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.s.display.map(|s| s.slice(self.buf))
    }

    pub fn uri(&self) -> Uri<'a> {
        Uri {
            buf: self.buf,
            s: self.s.uri,
        }
    }

    /// Header parameters after the URI, leading `;` included.
    pub fn params(&self) -> &'a [u8] {
        self.s.params.slice(self.buf)
    }

    pub fn tag(&self) -> Option<&'a [u8]> {
        self.s.tag.map(|s| s.slice(self.buf))
    }

    /// True for a loose-routing entry (`;lr` in the URI).
    pub fn is_loose_route(&self) -> bool {
        self.uri().param(b"lr").is_some()
    }

    pub fn scheme(&self) -> Scheme {
        self.s.uri.scheme
    }
}

/// Entries of a comma-separated name-addr header across all its fields, top first.
pub struct NameAddrs<'a> {
    buf: &'a [u8],
    name: HeaderName,
    headers: std::slice::Iter<'a, Header>,
    current: Option<CommaSplit<'a>>,
}

impl<'a> NameAddrs<'a> {
    fn new(raw: &'a RawMessage, name: HeaderName) -> Self {
        let star = name == HeaderName::Contact && raw.header(name) == Some(b"*");
        let headers = if star { [].iter() } else { raw.headers.iter() };
        NameAddrs {
            buf: &raw.buf,
            name,
            headers,
            current: None,
        }
    }
}

impl<'a> Iterator for NameAddrs<'a> {
    type Item = Result<NameAddr<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(element) = self.current.as_mut().and_then(Iterator::next) {
                return Some(
                    parse_name_addr(self.buf, element)
                        .map(|s| NameAddr { buf: self.buf, s })
                        .ok_or(ParseError::BadHeader(self.name)),
                );
            }
            let name = self.name;
            let header = self.headers.find(|h| h.name == name)?;
            self.current = Some(CommaSplit::new(self.buf, header.value));
        }
    }
}

impl Rejected {
    pub fn into_raw(self) -> RawMessage {
        *self.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Result<Message, ParseError> {
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
             To: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        Message::parse(Bytes::from(text))
    }

    #[test]
    fn request_uri_headers_are_refused() {
        // RFC 4475 3.1.2.11 (escruri).
        for uri in [
            "sip:user@example.com?Route=%3Csip:example.com%3E",
            "sips:user@example.com;lr?Subject=x",
            "sip:user@example.com?",
        ] {
            assert_eq!(
                request(uri).unwrap_err(),
                ParseError::BadRequestUri,
                "{uri}"
            );
        }
        // Headers stay legal where a URI may carry them, e.g. a Contact.
        let text = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
                    To: <sip:u@example.com>\r\nFrom: <sip:u@example.com>;tag=1\r\n\
                    Call-ID: c1\r\nCSeq: 1 REGISTER\r\n\
                    Contact: <sip:u@example.com?Route=%3Csip:p.example.com%3E>\r\n\r\n";
        let msg = Message::parse(Bytes::from(text)).expect("valid REGISTER");
        let contact = msg.contacts().next().expect("one contact").expect("valid");
        assert_eq!(
            contact.uri().headers(),
            Some(&b"Route=%3Csip:p.example.com%3E"[..])
        );
        assert!(request("sip:user@example.com;transport=tcp").is_ok());
    }
}

#[cfg(test)]
mod deferred_tests {
    use super::*;
    use crate::sip::{Limits, ResponseBuilder};

    const OPTIONS: &str = "OPTIONS sip:edge.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:edge.example.com>\r\nCall-ID: d1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    /// Scans (the message stays answerable), then validation names the fault, and a 400
    /// carrying it can be built.
    fn deferred(text: &str) -> ParseError {
        let raw = RawMessage::scan(
            Bytes::copy_from_slice(text.as_bytes()),
            Framing::Datagram,
            &Limits::default(),
        )
        .expect("answerable faults do not stop the scan");
        let rejected = Message::validate(raw).expect_err("validation reports the fault");
        let reason = rejected.error.to_string();
        let reply = ResponseBuilder::new(&rejected.raw, 400)
            .reason(&reason)
            .build();
        let reply = Message::parse(reply).expect("the 400 parses");
        assert_eq!(reply.call_id(), b"d1");
        assert_eq!(reply.reason(), reason.as_bytes());
        rejected.error
    }

    #[test]
    fn content_length_faults_are_answerable_over_udp() {
        let longer = OPTIONS.replace("Content-Length: 0", "Content-Length: 10");
        assert!(matches!(
            deferred(&longer),
            ParseError::ContentLengthMismatch {
                declared: 10,
                available: 0
            }
        ));
        let bad = OPTIONS.replace("Content-Length: 0", "Content-Length: -1");
        assert_eq!(
            deferred(&bad),
            ParseError::BadHeader(HeaderName::ContentLength)
        );
        let twice = OPTIONS.replace("Content-Length: 0", "Content-Length: 0\r\nl: 0");
        assert_eq!(
            deferred(&twice),
            ParseError::Multiple(HeaderName::ContentLength)
        );
    }

    #[test]
    fn garbage_header_lines_and_spaced_uris_are_answerable() {
        let garbage = OPTIONS.replace("Call-ID: d1\r\n", "Call-ID: d1\r\nthis is not a header\r\n");
        assert_eq!(deferred(&garbage), ParseError::BadHeaderLine);
        let spaced = OPTIONS.replace("sip:edge.example.com SIP", "sip:edge.example.com; lr SIP");
        assert_eq!(deferred(&spaced), ParseError::BadRequestUri);
    }

    #[test]
    fn broken_content_length_is_fatal_on_streams() {
        for text in [
            OPTIONS.replace("Content-Length: 0", "Content-Length: -1"),
            OPTIONS.replace("Content-Length: 0", "Content-Length: 0\r\nl: 0"),
        ] {
            let mut framer = crate::sip::StreamFramer::new(Limits::default());
            framer.extend(text.as_bytes());
            assert!(framer.next_frame().is_err(), "{text}");
        }
    }
}
