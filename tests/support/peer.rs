//! [`SipPeer`]: a small scripted SIP user agent that plays the customer PBX and the vendor in
//! the forwarding tests. It owns a UDP socket, or a TCP listener plus the connections it
//! accepted or opened, and hands every message it receives to the test in arrival order; it
//! never answers, retransmits or drops anything by itself. The test decides each message.
//!
//! Messages are read with the tiny parser in this file ([`Message`]), not with warp-edge's own:
//! the tests must not share a bug with the code under test. It understands only what the tests
//! need: the start line, header fields in order (compact names expanded, comma lists split),
//! the dialog fields, and URIs with an IP literal host.
//!
//! Requests and responses are built after RFC 3261: [`SipPeer::response_to`] (8.2.6),
//! [`SipPeer::ack_for_2xx`] and [`SipPeer::bye`] from a [`Dialog`] (12.1, 12.2, strict routers
//! included), [`SipPeer::cancel_for`] (9.1) and [`SipPeer::ack_for_non2xx`] (17.1.1.3).
//!
//! Waits use [`within`] from the parent module: a missing message fails the test; nothing here
//! measures time.

use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::within;

/// How long [`SipPeer::expect_silence`] listens before concluding nothing more is coming. A
/// negative can only be checked with a bounded wait; this one never makes a test fail by
/// being slow, only by something arriving.
pub const QUIET_PERIOD: Duration = Duration::from_millis(300);

/// The largest datagram or stream message a peer accepts.
const MAX_MESSAGE: usize = 65_535;

/// RFC 3261 magic cookie that starts every branch (8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// A fresh number for branches, tags and Call-IDs, unique within the test process.
fn serial() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

// === Transport ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The token in a Via sent-protocol (`UDP`, `TCP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    /// The `transport` URI parameter, if one is needed (UDP is the default).
    fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        }
    }
}

// === header names ===

/// The full name for a compact form (RFC 3261 7.3.3 and the registered ones), else `name`.
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'v' => "Via",
        b'i' => "Call-ID",
        b'f' => "From",
        b't' => "To",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'e' => "Content-Encoding",
        b'k' => "Supported",
        b's' => "Subject",
        _ => name,
    }
}

fn same_name(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

/// Fields whose value may be a comma-separated list of several values (RFC 3261 7.3.1).
/// Only these are split by [`Message::all`]; a Date or a quoted display name is not.
const LIST_HEADERS: &[&str] = &[
    "Via",
    "Route",
    "Record-Route",
    "Contact",
    "Allow",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "Accept",
];

/// Splits a header value at commas outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (at, ch) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match ch {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

// === URIs and parameters ===

/// The URI inside a name-addr (`"Bob" <sip:b@h>;tag=x` gives `sip:b@h`) or an addr-spec
/// (`sip:b@h;tag=x` gives `sip:b@h`, header parameters belonging to the field, RFC 3261 20.10).
pub fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split(';').next().unwrap_or_default().trim(),
    }
}

/// The field parameters after the URI (`;tag=x;lr`), outside the angle brackets.
fn field_params(value: &str) -> &str {
    match value.find('>') {
        Some(close) => &value[close + 1..],
        None => value.find(';').map_or("", |at| &value[at..]),
    }
}

/// The value of parameter `name` in `;a=1;b;c=3` (`Some("")` for a flag).
pub fn param<'a>(params: &'a str, name: &str) -> Option<&'a str> {
    params.split(';').skip(1).find_map(|p| {
        let (key, value) = p.split_once('=').unwrap_or((p, ""));
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// A SIP URI with an IP literal host, enough to find where to send and to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// `;a=1;b` as written, including the leading `;` (empty when none).
    pub params: String,
}

impl SipUri {
    pub fn parse(uri: &str) -> Option<SipUri> {
        let rest = uri
            .strip_prefix("sip:")
            .or_else(|| uri.strip_prefix("sips:"))?;
        let rest = rest.split('?').next().unwrap_or_default();
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((user, hostport)) => (Some(user.to_owned()), hostport),
            None => (None, rest),
        };
        let (hostport, params) = match hostport.find(';') {
            Some(at) => (&hostport[..at], &hostport[at..]),
            None => (hostport, ""),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = after.strip_prefix(':').map(str::parse).transpose().ok()?;
            (host.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port.parse().ok()?)),
                None => (hostport.to_owned(), None),
            }
        };
        Some(SipUri {
            user,
            host,
            port,
            params: params.to_owned(),
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    /// Has the loose-routing flag `lr` (RFC 3261 19.1.1).
    pub fn is_loose(&self) -> bool {
        self.param("lr").is_some()
    }

    /// The transport the URI asks for (UDP unless `transport=tcp`).
    pub fn transport(&self) -> Transport {
        match self.param("transport") {
            Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
            _ => Transport::Udp,
        }
    }

    /// Where to send: the IP literal host and the port (5060 when absent). The tests never
    /// use DNS names.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port.unwrap_or(5060)))
    }
}

// === Message ===

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One SIP message: the bytes as received or built, and a parsed view of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    /// Every field in order, names as written (compact forms kept; lookups expand them).
    pub headers: Vec<(String, String)>,
    pub body: String,
    raw: Vec<u8>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.raw))
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        &self.raw
    }
}

impl Message {
    /// Parses one whole message. The body is what follows the blank line (the framer already
    /// cut it to Content-Length on streams); a Content-Length that disagrees is an error.
    pub fn parse(bytes: &[u8]) -> Result<Message, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no blank line after the header: {text:?}"))?;
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let start = if let Some(status) = first.strip_prefix("SIP/2.0 ") {
            let (code, reason) = status.split_once(' ').unwrap_or((status, ""));
            let code = code
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=699).contains(c))
                .ok_or_else(|| format!("bad status line {first:?}"))?;
            StartLine::Response {
                code,
                reason: reason.to_owned(),
            }
        } else {
            let mut parts = first.split(' ');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(method), Some(uri), Some("SIP/2.0"), None) if !method.is_empty() => {
                    StartLine::Request {
                        method: method.to_owned(),
                        uri: uri.to_owned(),
                    }
                }
                _ => return Err(format!("bad start line {first:?}")),
            }
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // Folded continuation of the previous field (RFC 3261 7.3.1).
                let (_, value) = headers
                    .last_mut()
                    .ok_or_else(|| format!("continuation before any field: {line:?}"))?;
                value.push(' ');
                value.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let message = Message {
            start,
            headers,
            body: body.to_owned(),
            raw: bytes.to_vec(),
        };
        if let Some(length) = message.header("Content-Length") {
            let length: usize = length
                .parse()
                .map_err(|_| format!("bad Content-Length {length:?}"))?;
            if length != body.len() {
                return Err(format!(
                    "Content-Length {length} but a body of {} bytes: {text:?}",
                    body.len()
                ));
            }
        }
        Ok(message)
    }

    /// Builds a message from its parts; Content-Length is written from the body.
    pub fn build(start: StartLine, headers: Vec<(String, String)>, body: &str) -> Message {
        let mut headers = headers;
        headers.retain(|(n, _)| !same_name(n, "Content-Length"));
        headers.push(("Content-Length".to_owned(), body.len().to_string()));
        Message::assemble(start, headers, body)
    }

    /// Writes the parts exactly as given (no Content-Length fix-up: forged messages need that).
    fn assemble(start: StartLine, headers: Vec<(String, String)>, body: &str) -> Message {
        let mut text = match &start {
            StartLine::Request { method, uri } => format!("{method} {uri} SIP/2.0\r\n"),
            StartLine::Response { code, reason } => format!("SIP/2.0 {code} {reason}\r\n"),
        };
        for (name, value) in &headers {
            let _ = write!(text, "{name}: {value}\r\n");
        }
        text.push_str("\r\n");
        text.push_str(body);
        Message {
            start,
            headers,
            body: body.to_owned(),
            raw: text.into_bytes(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI; panics on a response (a test bug, not a wire fault).
    pub fn uri(&self) -> &str {
        match &self.start {
            StartLine::Request { uri, .. } => uri,
            StartLine::Response { .. } => panic!("a response has no Request-URI: {self}"),
        }
    }

    /// The status code, or `None` for a request.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The status code; panics on a request.
    pub fn status(&self) -> u16 {
        self.code()
            .unwrap_or_else(|| panic!("expected a response: {self}"))
    }

    pub fn reason(&self) -> &str {
        match &self.start {
            StartLine::Response { reason, .. } => reason,
            StartLine::Request { .. } => "",
        }
    }

    /// The first field named `name` (compact forms match their full names), whole.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` in order: each field, and each element of a comma list for the
    /// list headers (Via, Route, Record-Route, Contact, ...).
    pub fn all(&self, name: &str) -> Vec<&str> {
        let split = LIST_HEADERS.iter().any(|l| same_name(l, name));
        self.headers
            .iter()
            .filter(|(n, _)| same_name(n, name))
            .flat_map(|(_, v)| {
                if split {
                    split_list(v)
                } else {
                    vec![v.as_str()]
                }
            })
            .collect()
    }

    /// Number of fields (lines) named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| same_name(n, name))
            .count()
    }

    pub fn vias(&self) -> Vec<&str> {
        self.all("Via")
    }

    pub fn top_via(&self) -> Option<Via> {
        self.vias().first().and_then(|v| Via::parse(v))
    }

    /// The `branch` of the top Via.
    pub fn branch(&self) -> Option<String> {
        self.top_via().and_then(|v| v.branch)
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or_default()
    }

    /// `(number, method)` of CSeq.
    pub fn cseq(&self) -> (u32, String) {
        let value = self.header("CSeq").unwrap_or_default();
        let mut parts = value.split_whitespace();
        let number = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (number, parts.next().unwrap_or_default().to_owned())
    }

    pub fn cseq_method(&self) -> String {
        self.cseq().1
    }

    /// The `tag` of From (named after the header, not a conversion).
    #[allow(clippy::wrong_self_convention)]
    pub fn from_tag(&self) -> Option<&str> {
        param(field_params(self.header("From")?), "tag")
    }

    pub fn to_tag(&self) -> Option<&str> {
        param(field_params(self.header("To")?), "tag")
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.header("Max-Forwards")?.parse().ok()
    }

    pub fn record_routes(&self) -> Vec<&str> {
        self.all("Record-Route")
    }

    pub fn routes(&self) -> Vec<&str> {
        self.all("Route")
    }

    /// The URI of the first Contact.
    pub fn contact_uri(&self) -> Option<&str> {
        self.all("Contact").first().map(|c| uri_of(c))
    }

    /// Where a request outside any dialog goes: the top Route if any, else the Request-URI
    /// (RFC 3261 8.1.2, loose routing).
    pub fn next_hop(&self) -> SocketAddr {
        let target = match self.routes().first() {
            Some(route) => uri_of(route).to_owned(),
            None => self.uri().to_owned(),
        };
        SipUri::parse(&target)
            .and_then(|u| u.socket_addr())
            .unwrap_or_else(|| panic!("no IP next hop in {target:?}: {self}"))
    }

    /// A copy with the first field `name` replaced (or appended before Content-Length).
    pub fn with_header(&self, name: &str, value: &str) -> Message {
        let mut headers = self.headers.clone();
        match headers.iter_mut().find(|(n, _)| same_name(n, name)) {
            Some(field) => field.1 = value.to_owned(),
            None => {
                let at = headers
                    .iter()
                    .position(|(n, _)| same_name(n, "Content-Length"))
                    .unwrap_or(headers.len());
                headers.insert(at, (name.to_owned(), value.to_owned()));
            }
        }
        Message::assemble(self.start.clone(), headers, &self.body)
    }

    /// A copy without any field named `name`.
    pub fn without(&self, name: &str) -> Message {
        let mut headers = self.headers.clone();
        headers.retain(|(n, _)| !same_name(n, name));
        Message::assemble(self.start.clone(), headers, &self.body)
    }

    /// A copy whose fields named `name` are replaced by one field per value, in order, where
    /// the first of them stood (appended before Content-Length if there was none).
    pub fn with_all(&self, name: &str, values: &[&str]) -> Message {
        let at = self
            .headers
            .iter()
            .position(|(n, _)| same_name(n, name))
            .or_else(|| {
                self.headers
                    .iter()
                    .position(|(n, _)| same_name(n, "Content-Length"))
            })
            .unwrap_or(self.headers.len());
        let mut headers: Vec<(String, String)> = self.headers[..at]
            .iter()
            .chain(
                self.headers[at..]
                    .iter()
                    .filter(|(n, _)| !same_name(n, name)),
            )
            .cloned()
            .collect();
        for (offset, value) in values.iter().enumerate() {
            headers.insert(at + offset, (name.to_owned(), (*value).to_owned()));
        }
        Message::assemble(self.start.clone(), headers, &self.body)
    }

    /// A copy with another Request-URI.
    pub fn with_uri(&self, uri: &str) -> Message {
        let StartLine::Request { method, .. } = &self.start else {
            panic!("with_uri on a response: {self}");
        };
        let start = StartLine::Request {
            method: method.clone(),
            uri: uri.to_owned(),
        };
        Message::assemble(start, self.headers.clone(), &self.body)
    }
}

// === Via ===

/// One Via value, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, ... as written.
    pub transport: String,
    /// `host:port` (or `host`) as written.
    pub sent_by: String,
    pub branch: Option<String>,
    /// `;branch=..;rport` as written.
    pub params: String,
}

impl Via {
    pub fn parse(value: &str) -> Option<Via> {
        let (protocol, rest) = value.trim().split_once(char::is_whitespace)?;
        let transport = protocol.strip_prefix("SIP/2.0/")?.to_owned();
        let rest = rest.trim();
        let (sent_by, params) = match rest.find(';') {
            Some(at) => (rest[..at].trim(), &rest[at..]),
            None => (rest, ""),
        };
        Some(Via {
            transport,
            sent_by: sent_by.to_owned(),
            branch: param(params, "branch").map(str::to_owned),
            params: params.to_owned(),
        })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    /// The sent-by as an address (IP literal and explicit port).
    pub fn sent_by_addr(&self) -> Option<SocketAddr> {
        self.sent_by.parse().ok()
    }
}

// === Received ===

/// A message as it arrived: who sent it, the bytes, and the parsed view (also reachable
/// through `Deref`, so `received.method()` works).
#[derive(Clone, Debug)]
pub struct Received {
    pub message: Message,
    /// The source address (for TCP, the connection's remote end).
    pub from: SocketAddr,
    pub transport: Transport,
}

impl Received {
    pub fn raw(&self) -> &[u8] {
        self.message.bytes()
    }
}

impl std::ops::Deref for Received {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

// === Dialog ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Uac,
    Uas,
}

/// Dialog state as RFC 3261 12.1 defines it, from one side's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dialog {
    pub side: Side,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The local party's From/To value without its tag (`<sip:pbx@127.0.0.10:5060>`).
    pub local_party: String,
    pub remote_party: String,
    /// Route set, in the order Route headers are written.
    pub route_set: Vec<String>,
    /// The remote target URI (the peer's Contact).
    pub remote_target: String,
    /// The last CSeq number this side used.
    pub local_cseq: u32,
    /// The CSeq number of the INVITE that made the dialog (the ACK reuses it).
    pub invite_cseq: u32,
}

impl Dialog {
    /// Where the next request in this dialog goes: the first route whether loose or strict
    /// (a strict router is the Request-URI, a loose one the top Route), else the target.
    pub fn next_hop(&self) -> SocketAddr {
        let target = self
            .route_set
            .first()
            .map_or(self.remote_target.as_str(), |r| uri_of(r));
        SipUri::parse(target)
            .and_then(|u| u.socket_addr())
            .unwrap_or_else(|| panic!("no IP next hop in {target:?}"))
    }

    /// Request-URI and Route values for the next request (RFC 3261 12.2.1.1).
    fn request_target(&self) -> (String, Vec<String>) {
        match self.route_set.first() {
            None => (self.remote_target.clone(), Vec::new()),
            Some(first) if uri_is_loose(first) => {
                (self.remote_target.clone(), self.route_set.clone())
            }
            Some(first) => {
                // Strict router: it becomes the Request-URI (parameters not allowed in a
                // Request-URI stripped, i.e. URI headers), the rest of the route set follows,
                // and the remote target goes last as a Route.
                let uri = uri_of(first)
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let mut routes: Vec<String> = self.route_set[1..].to_vec();
                routes.push(format!("<{}>", self.remote_target));
                (uri, routes)
            }
        }
    }
}

fn uri_is_loose(route: &str) -> bool {
    SipUri::parse(uri_of(route)).is_some_and(|u| u.is_loose())
}

/// `value` without its `tag` field parameter.
fn without_tag(value: &str) -> String {
    let uri_end = value
        .find('>')
        .map_or_else(|| value.find(';').unwrap_or(value.len()), |close| close + 1);
    let mut out = value[..uri_end].to_owned();
    for p in value[uri_end..].split(';').skip(1) {
        let key = p.split('=').next().unwrap_or_default().trim();
        if !key.eq_ignore_ascii_case("tag") {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out
}

/// The standard reason phrase for the codes the tests use.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        183 => "Session Progress",
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Whatever",
    }
}

/// A small SDP offer/answer (the edge never reads it; its length must be right).
fn sdp(ip: IpAddr) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

// === SipPeer ===

type Inbox = mpsc::UnboundedSender<Result<Received, String>>;
type Writers = Arc<Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<OwnedWriteHalf>>>>>;

enum Socket {
    Udp(Arc<UdpSocket>),
    Tcp { writers: Writers },
}

/// A scripted SIP user agent on one loopback address. See the module docs.
pub struct SipPeer {
    socket: Socket,
    local: SocketAddr,
    transport: Transport,
    /// The user part of this peer's Contact and From.
    user: String,
    inbox: mpsc::UnboundedReceiver<Result<Received, String>>,
    inbox_tx: Inbox,
    /// The To-tag this peer answers with, per dialog (Call-ID and From-tag).
    to_tags: Mutex<HashMap<(String, String), String>>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Drop for SipPeer {
    fn drop(&mut self) {
        if let Ok(tasks) = self.tasks.lock() {
            for task in tasks.iter() {
                task.abort();
            }
        }
    }
}

impl SipPeer {
    fn new(socket: Socket, local: SocketAddr, transport: Transport) -> SipPeer {
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        SipPeer {
            socket,
            local,
            transport,
            user: "peer".to_owned(),
            inbox,
            inbox_tx,
            to_tags: Mutex::new(HashMap::new()),
            tasks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A UDP peer bound to `local` (port 0 picks one).
    pub async fn udp(local: SocketAddr) -> SipPeer {
        let socket = Arc::new(UdpSocket::bind(local).await.expect("bind peer UDP socket"));
        let local = socket.local_addr().expect("peer UDP address");
        let peer = SipPeer::new(Socket::Udp(socket.clone()), local, Transport::Udp);
        let inbox = peer.inbox_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_MESSAGE];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let received = Message::parse(&buf[..len])
                    .map(|message| Received {
                        message,
                        from,
                        transport: Transport::Udp,
                    })
                    .map_err(|e| format!("datagram from {from}: {e}"));
                if inbox.send(received).is_err() {
                    return;
                }
            }
        });
        peer.keep(reader.abort_handle());
        peer
    }

    /// A TCP peer listening on `local`; it answers on the connection a request came on and
    /// opens a connection (from its own address) to send anywhere else.
    pub async fn tcp_listen(local: SocketAddr) -> SipPeer {
        let listener = reusable_socket(local)
            .and_then(|s| {
                s.bind(local)?;
                s.listen(64)
            })
            .expect("bind peer TCP listener");
        SipPeer::serve_tcp(listener)
    }

    /// A TCP peer that opens a connection from `local_ip` to `remote` at once. It also
    /// listens on the connection's own address (SO_REUSEPORT), so its Via and Contact name a
    /// place that accepts connections, the way SIP phones behind no NAT do.
    pub async fn tcp_connect(local_ip: IpAddr, remote: SocketAddr) -> SipPeer {
        let peer = SipPeer::tcp_listen(SocketAddr::new(local_ip, 0)).await;
        peer.connect(remote).await;
        peer
    }

    fn serve_tcp(listener: TcpListener) -> SipPeer {
        let local = listener.local_addr().expect("peer TCP address");
        let writers: Writers = Arc::default();
        let peer = SipPeer::new(
            Socket::Tcp {
                writers: writers.clone(),
            },
            local,
            Transport::Tcp,
        );
        let (inbox, tasks) = (peer.inbox_tx.clone(), peer.tasks.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, from)) = listener.accept().await {
                adopt(stream, from, &writers, &inbox, &tasks);
            }
        });
        peer.keep(acceptor.abort_handle());
        peer
    }

    fn keep(&self, task: AbortHandle) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    /// Sets the user part of Contact and From (`pbx`, `vendor`).
    pub fn named(mut self, user: &str) -> SipPeer {
        self.user = user.to_owned();
        self
    }

    /// The bound address (UDP socket, or TCP listener).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// This peer's Contact URI.
    pub fn contact_uri(&self) -> String {
        format!(
            "sip:{}@{}{}",
            self.user,
            self.local,
            self.transport.uri_param()
        )
    }

    /// The connections currently open, by remote address (TCP only).
    pub fn connections(&self) -> Vec<SocketAddr> {
        match &self.socket {
            Socket::Udp(_) => Vec::new(),
            Socket::Tcp { writers } => writers
                .lock()
                .map(|w| w.keys().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// Opens a TCP connection from this peer's address to `remote`.
    async fn connect(&self, remote: SocketAddr) -> Arc<tokio::sync::Mutex<OwnedWriteHalf>> {
        let Socket::Tcp { writers } = &self.socket else {
            panic!("connect on a UDP peer");
        };
        let socket = reusable_socket(self.local).expect("peer TCP socket");
        socket
            .bind(self.local)
            .expect("bind the peer's own address");
        let stream = within(&format!("TCP connect to {remote}"), socket.connect(remote))
            .await
            .unwrap_or_else(|e| panic!("connect {} -> {remote}: {e}", self.local));
        adopt(stream, remote, writers, &self.inbox_tx, &self.tasks)
    }

    // --- sending ---

    /// Sends `bytes` to `to`: one datagram, or one write on the connection to `to` (opened
    /// from this peer's address when there is none).
    pub async fn send_to(&self, to: SocketAddr, bytes: impl AsRef<[u8]>) {
        let bytes = bytes.as_ref();
        match &self.socket {
            Socket::Udp(socket) => {
                socket
                    .send_to(bytes, to)
                    .await
                    .unwrap_or_else(|e| panic!("send to {to}: {e}"));
            }
            Socket::Tcp { writers } => {
                let existing = writers.lock().ok().and_then(|w| w.get(&to).cloned());
                let writer = match existing {
                    Some(writer) => writer,
                    None => self.connect(to).await,
                };
                let mut writer = writer.lock().await;
                writer
                    .write_all(bytes)
                    .await
                    .unwrap_or_else(|e| panic!("write to {to}: {e}"));
            }
        }
    }

    /// Sends `message` where it goes by itself: the top Route, else the Request-URI.
    pub async fn send(&self, message: &Message) {
        self.send_to(message.next_hop(), message).await;
    }

    /// Sends a response back where `request` came from (for TCP, on its connection).
    pub async fn reply(&self, request: &Received, response: &Message) {
        self.send_to(request.from, response).await;
    }

    /// Sends an in-dialog request to the dialog's next hop.
    pub async fn send_in(&self, dialog: &Dialog, request: &Message) {
        self.send_to(dialog.next_hop(), request).await;
    }

    // --- receiving ---

    /// The next message, whatever it is; fails the test when none comes or it did not parse.
    pub async fn recv(&mut self) -> Received {
        let what = format!("message at {}", self.local);
        let next = within(&what, self.inbox.recv()).await;
        match next {
            Some(Ok(received)) => received,
            Some(Err(fault)) => panic!("{} received something unreadable: {fault}", self.local),
            None => panic!("{}: receiving stopped", self.local),
        }
    }

    /// The next message, which must be a `method` request.
    pub async fn recv_request(&mut self, method: &str) -> Received {
        let received = self.recv().await;
        assert_eq!(
            received.method(),
            Some(method),
            "{} expected {method}, got from {}:\n{}",
            self.local,
            received.from,
            received.message
        );
        received
    }

    /// The next message, which must be a response.
    pub async fn recv_response(&mut self) -> Received {
        let received = self.recv().await;
        assert!(
            !received.is_request(),
            "{} expected a response, got from {}:\n{}",
            self.local,
            received.from,
            received.message
        );
        received
    }

    /// The next message, which must be a response with `code`.
    pub async fn recv_status(&mut self, code: u16) -> Received {
        let received = self.recv_response().await;
        assert_eq!(
            received.status(),
            code,
            "{} expected {code}:\n{}",
            self.local,
            received.message
        );
        received
    }

    /// Reads until a message satisfying `wanted` arrives; returns it and every message read
    /// before it, in order, for the test to assert on.
    pub async fn recv_until(
        &mut self,
        mut wanted: impl FnMut(&Received) -> bool,
    ) -> (Received, Vec<Received>) {
        let mut before = Vec::new();
        loop {
            let received = self.recv().await;
            if wanted(&received) {
                return (received, before);
            }
            before.push(received);
        }
    }

    /// Reads until a `method` request; the others are returned.
    pub async fn wait_request(&mut self, method: &str) -> (Received, Vec<Received>) {
        self.recv_until(|r| r.method() == Some(method)).await
    }

    /// Reads until a response with `code`; the others are returned.
    pub async fn wait_status(&mut self, code: u16) -> (Received, Vec<Received>) {
        self.recv_until(|r| r.code() == Some(code)).await
    }

    /// Everything that has arrived and not been read, without waiting.
    pub fn drain(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(next) = self.inbox.try_recv() {
            match next {
                Ok(received) => out.push(received),
                Err(fault) => panic!("{} received something unreadable: {fault}", self.local),
            }
        }
        out
    }

    /// Listens for [`QUIET_PERIOD`] and fails the test if anything arrives (or was unread).
    pub async fn expect_silence(&mut self) {
        tokio::time::sleep(QUIET_PERIOD).await;
        let unread = self.drain();
        assert!(
            unread.is_empty(),
            "{} expected nothing, got:\n{}",
            self.local,
            unread
                .iter()
                .map(|r| format!("from {}:\n{}", r.from, r.message))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // --- building ---

    /// This peer's Via for a new client transaction.
    fn new_via(&self) -> String {
        format!(
            "SIP/2.0/{} {};branch={BRANCH_COOKIE}-peer-{}-{};rport",
            self.transport.via_token(),
            self.local,
            std::process::id(),
            serial()
        )
    }

    fn contact(&self) -> String {
        format!("<{}>", self.contact_uri())
    }

    /// A new INVITE for `to_uri` (its To and, with the host replaced by `target`, its
    /// Request-URI): this peer's Via (fresh branch), a From tag, a new Call-ID, CSeq 1,
    /// Contact, Max-Forwards 70 and an SDP body. Send it with [`SipPeer::send`].
    pub fn invite(&self, to_uri: &str, target: SocketAddr) -> Message {
        let user = SipUri::parse(to_uri)
            .and_then(|u| u.user)
            .unwrap_or_else(|| "callee".to_owned());
        let request_uri = format!("sip:{user}@{target}{}", self.transport.uri_param());
        let n = serial();
        let call_id = format!("peer-{}-{n}@{}", std::process::id(), self.local.ip());
        self.invite_with(&request_uri, to_uri, &call_id)
    }

    /// An INVITE with the Request-URI, To and Call-ID given (for Call-ID hashing tests).
    pub fn invite_with(&self, request_uri: &str, to_uri: &str, call_id: &str) -> Message {
        let body = sdp(self.local.ip());
        Message::build(
            StartLine::Request {
                method: "INVITE".to_owned(),
                uri: request_uri.to_owned(),
            },
            fields(&[
                ("Via", self.new_via()),
                ("Max-Forwards", "70".to_owned()),
                (
                    "From",
                    format!("<sip:{}@{}>;tag=f{}", self.user, self.local.ip(), serial()),
                ),
                ("To", format!("<{to_uri}>")),
                ("Call-ID", call_id.to_owned()),
                ("CSeq", "1 INVITE".to_owned()),
                ("Contact", self.contact()),
                ("Content-Type", "application/sdp".to_owned()),
            ]),
            &body,
        )
    }

    /// A response to `request` (RFC 3261 8.2.6): all Via in order, From, To (with this
    /// peer's tag for the dialog unless the request had one, none on a 100), Call-ID, CSeq,
    /// Record-Route on 101-299, this peer's Contact, no body.
    pub fn response_to(&self, request: &Message, code: u16) -> Message {
        let mut headers: Vec<(String, String)> = request
            .vias()
            .iter()
            .map(|v| ("Via".to_owned(), (*v).to_owned()))
            .collect();
        let from = request.header("From").unwrap_or_default();
        let mut to = request.header("To").unwrap_or_default().to_owned();
        if code > 100 && request.to_tag().is_none() {
            let key = (
                request.call_id().to_owned(),
                request.from_tag().unwrap_or_default().to_owned(),
            );
            let tag = self
                .to_tags
                .lock()
                .expect("to-tag map")
                .entry(key)
                .or_insert_with(|| format!("t{}", serial()))
                .clone();
            let _ = write!(to, ";tag={tag}");
        }
        headers.push(("From".to_owned(), from.to_owned()));
        headers.push(("To".to_owned(), to));
        headers.push(("Call-ID".to_owned(), request.call_id().to_owned()));
        headers.push((
            "CSeq".to_owned(),
            request.header("CSeq").unwrap_or_default().to_owned(),
        ));
        if (101..300).contains(&code) {
            for rr in request.record_routes() {
                headers.push(("Record-Route".to_owned(), rr.to_owned()));
            }
        }
        if code > 100 {
            headers.push(("Contact".to_owned(), self.contact()));
        }
        Message::build(
            StartLine::Response {
                code,
                reason: reason_phrase(code).to_owned(),
            },
            headers,
            "",
        )
    }

    /// The dialog this peer has as the caller, from its INVITE and a 2xx (or 18x with a tag):
    /// route set = the response's Record-Route reversed, target = its Contact.
    pub fn dialog_uac(&self, invite: &Message, response: &Message) -> Dialog {
        let (cseq, _) = invite.cseq();
        Dialog {
            side: Side::Uac,
            call_id: invite.call_id().to_owned(),
            local_tag: invite.from_tag().expect("INVITE From tag").to_owned(),
            remote_tag: response
                .to_tag()
                .unwrap_or_else(|| panic!("response without a To tag: {response}"))
                .to_owned(),
            local_party: without_tag(invite.header("From").unwrap_or_default()),
            remote_party: without_tag(invite.header("To").unwrap_or_default()),
            route_set: response
                .record_routes()
                .iter()
                .rev()
                .map(|r| (*r).to_owned())
                .collect(),
            remote_target: response
                .contact_uri()
                .unwrap_or_else(|| panic!("response without Contact: {response}"))
                .to_owned(),
            local_cseq: cseq,
            invite_cseq: cseq,
        }
    }

    /// The dialog this peer has as the callee, from the INVITE it received and the response
    /// it sent with a tag: route set = the INVITE's Record-Route in order, target = its Contact.
    pub fn dialog_uas(&self, invite: &Message, response: &Message) -> Dialog {
        let (cseq, _) = invite.cseq();
        Dialog {
            side: Side::Uas,
            call_id: invite.call_id().to_owned(),
            local_tag: response
                .to_tag()
                .unwrap_or_else(|| panic!("own response without a To tag: {response}"))
                .to_owned(),
            remote_tag: invite.from_tag().expect("INVITE From tag").to_owned(),
            local_party: without_tag(invite.header("To").unwrap_or_default()),
            remote_party: without_tag(invite.header("From").unwrap_or_default()),
            route_set: invite
                .record_routes()
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
            remote_target: invite
                .contact_uri()
                .unwrap_or_else(|| panic!("INVITE without Contact: {invite}"))
                .to_owned(),
            // Nothing sent yet in this dialog: the space is this side's own (12.1.1).
            local_cseq: 0,
            invite_cseq: cseq,
        }
    }

    /// A request inside `dialog` (RFC 3261 12.2.1.1) with CSeq `number method`.
    fn in_dialog(&self, dialog: &Dialog, method: &str, number: u32) -> Message {
        let (uri, routes) = dialog.request_target();
        let mut headers = fields(&[
            ("Via", self.new_via()),
            ("Max-Forwards", "70".to_owned()),
            (
                "From",
                format!("{};tag={}", dialog.local_party, dialog.local_tag),
            ),
            (
                "To",
                format!("{};tag={}", dialog.remote_party, dialog.remote_tag),
            ),
            ("Call-ID", dialog.call_id.clone()),
            ("CSeq", format!("{number} {method}")),
        ]);
        for route in routes {
            headers.push(("Route".to_owned(), route));
        }
        if method != "ACK" {
            headers.push(("Contact".to_owned(), self.contact()));
        }
        Message::build(
            StartLine::Request {
                method: method.to_owned(),
                uri,
            },
            headers,
            "",
        )
    }

    /// The ACK for a 2xx (RFC 3261 13.2.2.4): in the dialog, a new branch, the INVITE's
    /// CSeq number. Send it with [`SipPeer::send_in`] or to `dialog.next_hop()`.
    pub fn ack_for_2xx(&self, invite: &Message, response: &Message) -> (Message, Dialog) {
        let dialog = self.dialog_uac(invite, response);
        let ack = self.ack_in(&dialog);
        (ack, dialog)
    }

    /// The ACK for the 2xx in an existing caller-side dialog.
    pub fn ack_in(&self, dialog: &Dialog) -> Message {
        self.in_dialog(dialog, "ACK", dialog.invite_cseq)
    }

    /// A BYE in `dialog`, with the next CSeq number.
    pub fn bye(&self, dialog: &mut Dialog) -> Message {
        dialog.local_cseq += 1;
        self.in_dialog(dialog, "BYE", dialog.local_cseq)
    }

    /// CANCEL for `invite` (RFC 3261 9.1): same Request-URI, Call-ID, From, To, Route and top
    /// Via (the same branch), CSeq number with method CANCEL.
    pub fn cancel_for(&self, invite: &Message) -> Message {
        self.hop_by_hop(invite, "CANCEL", invite.header("To").unwrap_or_default())
    }

    /// ACK for a non-2xx final (RFC 3261 17.1.1.3): like CANCEL, with the response's To.
    pub fn ack_for_non2xx(&self, invite: &Message, response: &Message) -> Message {
        self.hop_by_hop(invite, "ACK", response.header("To").unwrap_or_default())
    }

    fn hop_by_hop(&self, invite: &Message, method: &str, to: &str) -> Message {
        let top_via = invite.vias().first().expect("INVITE Via").to_string();
        let mut headers = fields(&[
            ("Via", top_via),
            ("Max-Forwards", "70".to_owned()),
            ("From", invite.header("From").unwrap_or_default().to_owned()),
            ("To", to.to_owned()),
            ("Call-ID", invite.call_id().to_owned()),
            ("CSeq", format!("{} {method}", invite.cseq().0)),
        ]);
        for route in invite.routes() {
            headers.push(("Route".to_owned(), route.to_owned()));
        }
        Message::build(
            StartLine::Request {
                method: method.to_owned(),
                uri: invite.uri().to_owned(),
            },
            headers,
            "",
        )
    }

    /// A 2xx with an SDP answer, for tests that want a realistic body.
    pub fn answer_with_sdp(&self, invite: &Message) -> Message {
        let response = self.response_to(invite, 200);
        let body = sdp(self.local.ip());
        let mut headers = response.headers.clone();
        headers.push(("Content-Type".to_owned(), "application/sdp".to_owned()));
        Message::build(response.start.clone(), headers, &body)
    }
}

fn fields(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

/// A TCP socket that can share its address with the peer's listener.
fn reusable_socket(local: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = match local {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    Ok(socket)
}

/// Registers a connection's write half under its remote address and starts reading it.
fn adopt(
    stream: TcpStream,
    remote: SocketAddr,
    writers: &Writers,
    inbox: &Inbox,
    tasks: &Arc<Mutex<Vec<AbortHandle>>>,
) -> Arc<tokio::sync::Mutex<OwnedWriteHalf>> {
    stream.set_nodelay(true).ok();
    let (mut reader, writer) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(writer));
    if let Ok(mut map) = writers.lock() {
        map.insert(remote, writer.clone());
    }
    let (inbox, writers) = (inbox.clone(), writers.clone());
    let task = tokio::spawn(async move {
        let mut buffer = Vec::new();
        loop {
            match frame(&mut buffer) {
                Ok(Some(bytes)) => {
                    let received = Message::parse(&bytes)
                        .map(|message| Received {
                            message,
                            from: remote,
                            transport: Transport::Tcp,
                        })
                        .map_err(|e| format!("TCP from {remote}: {e}"));
                    if inbox.send(received).is_err() {
                        return;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(fault) => {
                    let _ = inbox.send(Err(format!("TCP from {remote}: {fault}")));
                    return;
                }
            }
            let mut chunk = [0u8; 8192];
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    if let Ok(mut map) = writers.lock() {
                        map.remove(&remote);
                    }
                    if !buffer.iter().all(|b| b.is_ascii_whitespace()) {
                        let _ = inbox.send(Err(format!(
                            "TCP from {remote} closed mid-message: {:?}",
                            String::from_utf8_lossy(&buffer)
                        )));
                    }
                    return;
                }
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
    });
    if let Ok(mut tasks) = tasks.lock() {
        tasks.push(task.abort_handle());
    }
    writer
}

/// Cuts one message off the front of a stream buffer: `Ok(None)` until it is whole. Leading
/// CRLFs (keep-alives, RFC 5626) are dropped; a message without Content-Length is an error
/// (RFC 3261 18.3).
fn frame(buffer: &mut Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let blank = buffer
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    buffer.drain(..blank);
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buffer.len() > MAX_MESSAGE {
            return Err("header longer than a message may be".to_owned());
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length = head
        .split("\r\n")
        .skip(1)
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            same_name(name.trim(), "Content-Length").then(|| value.trim().to_owned())
        })
        .ok_or_else(|| format!("no Content-Length on a stream: {head:?}"))?;
    let length: usize = length
        .parse()
        .map_err(|_| format!("bad Content-Length {length:?}"))?;
    let total = end + 4 + length;
    if buffer.len() < total {
        return Ok(None);
    }
    Ok(Some(buffer.drain(..total).collect()))
}
