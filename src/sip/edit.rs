//! Edits applied while writing a message out. Each edit becomes a splice (a byte range of the
//! original replaced by new text); everything between splices is copied exactly as received.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use smallvec::SmallVec;

use super::message::{Message, StartLine};
use super::value::{CommaSplit, Rport, ViaSpans};
use super::{HeaderName, Span};

/// A change to make while forwarding. Values are written as given: the caller builds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit<'e> {
    /// A new top Via value (`SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...`), written as its
    /// own `Via:` field above the existing ones.
    PushVia(&'e [u8]),
    /// Removes the top Via value: the whole field when it holds one value, else that value.
    RemoveTopVia,
    /// Sets Max-Forwards, adding the field when absent.
    SetMaxForwards(u8),
    /// A Record-Route value (`<sip:192.0.2.1;lr>`), written as its own field above existing
    /// Record-Route fields.
    AddRecordRoute(&'e [u8]),
    /// Removes the top Route value (the whole field when it holds one value).
    RemoveTopRoute,
    /// Removes the first `n` Route values, across fields (a double Record-Route comes back
    /// as two Route values that may share a field or not).
    RemoveRoutes(usize),
    SetRequestUri(&'e [u8]),
    /// Removes the last Route value (strict-router fix-up, RFC 3261 16.4).
    RemoveLastRoute,
    /// A Route value written as its own field after the existing Route fields (sending to a
    /// strict router, RFC 3261 16.6 step 6).
    AppendRoute(&'e [u8]),
    /// Marks the top Via with where the request really came from: `received` when the sent-by
    /// differs from the source address or `rport` was asked for (RFC 3261 18.2.1), and the
    /// source port in an empty `rport` (RFC 3581).
    ViaReceived(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("edit applies to requests only")]
    NotARequest,
    #[error("no Route header to remove")]
    NoRoute,
    #[error("edits overlap")]
    Overlap,
}

/// What a splice writes in place of the bytes it covers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Insert<'e> {
    Nothing,
    Bytes(&'e [u8]),
    /// `Name: value\r\n`
    Line(&'static str, &'e [u8]),
    Number(u32),
    /// `;received=<ip>`
    ReceivedParam(IpAddr),
    Ip(IpAddr),
    /// `=<port>` after a bare `rport`
    RportValue(u16),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Splice<'e> {
    pub start: usize,
    pub end: usize,
    pub insert: Insert<'e>,
}

pub(crate) type Splices<'e> = SmallVec<[Splice<'e>; 8]>;

impl Splice<'_> {
    fn at(pos: usize, insert: Insert<'_>) -> Splice<'_> {
        Splice {
            start: pos,
            end: pos,
            insert,
        }
    }
}

fn write_ip(out: &mut BytesMut, ip: IpAddr) {
    // Writing into BytesMut cannot fail; it grows as needed.
    let _ = write!(out, "{ip}");
}

fn write_insert(out: &mut BytesMut, insert: &Insert<'_>) {
    match *insert {
        Insert::Nothing => {}
        Insert::Bytes(b) => out.extend_from_slice(b),
        Insert::Line(name, value) => {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        Insert::Number(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        Insert::ReceivedParam(ip) => {
            out.extend_from_slice(b";received=");
            write_ip(out, ip);
        }
        Insert::Ip(ip) => write_ip(out, ip),
        Insert::RportValue(port) => {
            out.extend_from_slice(b"=");
            out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
        }
    }
}

/// Copies `buf[from..to]` into `out`, applying `splices` (sorted, non-overlapping, inside the
/// range).
pub(crate) fn write_spliced(
    buf: &[u8],
    from: usize,
    to: usize,
    splices: &[Splice<'_>],
    out: &mut BytesMut,
) {
    let mut pos = from;
    for s in splices {
        out.extend_from_slice(&buf[pos..s.start]);
        write_insert(out, &s.insert);
        pos = s.end;
    }
    out.extend_from_slice(&buf[pos..to]);
}

/// The splices that mark a Via with its real source (see [`Edit::ViaReceived`]).
pub(crate) fn via_received_splices<'e>(via: &ViaSpans, source: SocketAddr, out: &mut Splices<'e>) {
    let ip = canonical_ip(source.ip());
    let rport_requested = via.rport == Rport::Requested;
    // The rport value goes first: when rport is the last parameter, both splices land on
    // the same offset and must read `rport=N;received=IP`.
    if let (true, Some(name)) = (rport_requested, via.rport_name) {
        out.push(Splice::at(
            name.end as usize,
            Insert::RportValue(source.port()),
        ));
    }
    if rport_requested || via.ip.map(canonical_ip) != Some(ip) {
        match via.received {
            Some(value) => out.push(Splice {
                start: value.start as usize,
                end: value.end as usize,
                insert: Insert::Ip(ip),
            }),
            None => out.push(Splice::at(
                via.params_end as usize,
                Insert::ReceivedParam(ip),
            )),
        }
    }
}

/// IPv4-mapped IPv6 addresses are written and compared as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Splices removing the first element of the header field at `header`: the whole field when
/// it has one element, else the element and the separator after it.
fn remove_first_element(msg: &Message, header: usize) -> Splice<'static> {
    let h = msg.headers()[header];
    let mut elements = CommaSplit::new(msg.bytes(), h.value);
    match (elements.next(), elements.next()) {
        (Some(first), Some(second)) => Splice {
            start: first.start as usize,
            end: second.start as usize,
            insert: Insert::Nothing,
        },
        _ => Splice {
            start: h.line.start as usize,
            end: h.line.end as usize,
            insert: Insert::Nothing,
        },
    }
}

/// Splices removing the first `n` Route values: whole fields while they are used up, then
/// the leading elements of the field where the count ends.
fn remove_routes(msg: &Message, n: usize, out: &mut Splices<'_>) -> Result<(), EditError> {
    let mut left = n;
    for h in msg.headers().iter().filter(|h| h.name == HeaderName::Route) {
        if left == 0 {
            return Ok(());
        }
        let elements: SmallVec<[Span; 4]> = CommaSplit::new(msg.bytes(), h.value).collect();
        if elements.len() <= left {
            left -= elements.len();
            out.push(Splice {
                start: h.line.start as usize,
                end: h.line.end as usize,
                insert: Insert::Nothing,
            });
        } else {
            out.push(Splice {
                start: elements[0].start as usize,
                end: elements[left].start as usize,
                insert: Insert::Nothing,
            });
            left = 0;
        }
    }
    if left > 0 {
        return Err(EditError::NoRoute);
    }
    Ok(())
}

fn first_header(msg: &Message, name: HeaderName) -> Option<usize> {
    msg.headers().iter().position(|h| h.name == name)
}

impl Message {
    /// Writes the message with `edits` applied into `out`: from its start line to the end of
    /// its body (leading CRLFs and bytes past Content-Length are not forwarded). With no edits
    /// the output equals those bytes exactly.
    pub fn write(&self, edits: &[Edit<'_>], out: &mut BytesMut) -> Result<(), EditError> {
        let buf = self.bytes();
        let mut splices = Splices::new();
        for edit in edits {
            match *edit {
                Edit::PushVia(value) => {
                    let line = self.headers()[self.via_header].line;
                    splices.push(Splice::at(line.start as usize, Insert::Line("Via", value)));
                }
                Edit::RemoveTopVia => splices.push(remove_first_element(self, self.via_header)),
                Edit::SetMaxForwards(n) => match self.max_forwards {
                    Some((_, index)) => {
                        let v = self.headers()[index].value;
                        splices.push(Splice {
                            start: v.start as usize,
                            end: v.end as usize,
                            insert: Insert::Number(u32::from(n)),
                        });
                    }
                    None => {
                        // The value is written through Number to avoid formatting into a buffer.
                        let at = self.headers_end();
                        splices.push(Splice::at(at, Insert::Bytes(b"Max-Forwards: ")));
                        splices.push(Splice::at(at, Insert::Number(u32::from(n))));
                        splices.push(Splice::at(at, Insert::Bytes(b"\r\n")));
                    }
                },
                Edit::AddRecordRoute(value) => {
                    let at = first_header(self, HeaderName::RecordRoute)
                        .map_or(self.headers_end(), |i| {
                            self.headers()[i].line.start as usize
                        });
                    splices.push(Splice::at(at, Insert::Line("Record-Route", value)));
                }
                Edit::RemoveTopRoute => {
                    let index = first_header(self, HeaderName::Route).ok_or(EditError::NoRoute)?;
                    splices.push(remove_first_element(self, index));
                }
                Edit::RemoveRoutes(n) => remove_routes(self, n, &mut splices)?,
                Edit::RemoveLastRoute => {
                    let index = self
                        .headers()
                        .iter()
                        .rposition(|h| h.name == HeaderName::Route)
                        .ok_or(EditError::NoRoute)?;
                    let h = self.headers()[index];
                    let elements: SmallVec<[Span; 4]> =
                        CommaSplit::new(self.bytes(), h.value).collect();
                    match elements.as_slice() {
                        [.., before, last] => splices.push(Splice {
                            start: before.end as usize,
                            end: last.end as usize,
                            insert: Insert::Nothing,
                        }),
                        _ => splices.push(Splice {
                            start: h.line.start as usize,
                            end: h.line.end as usize,
                            insert: Insert::Nothing,
                        }),
                    }
                }
                Edit::AppendRoute(value) => {
                    let at = self
                        .headers()
                        .iter()
                        .rfind(|h| h.name == HeaderName::Route)
                        .map_or(self.headers_end(), |h| h.line.end as usize);
                    splices.push(Splice::at(at, Insert::Line("Route", value)));
                }
                Edit::SetRequestUri(uri) => match self.start_line() {
                    StartLine::Request { uri: span, .. } => splices.push(Splice {
                        start: span.start as usize,
                        end: span.end as usize,
                        insert: Insert::Bytes(uri),
                    }),
                    StartLine::Response { .. } => return Err(EditError::NotARequest),
                },
                Edit::ViaReceived(source) => via_received_splices(&self.via, source, &mut splices),
            }
        }
        // Stable: insertions at one point keep the order the edits were given in.
        splices.sort_by_key(|s| s.start);
        if splices.windows(2).any(|w| w[1].start < w[0].end) {
            return Err(EditError::Overlap);
        }
        let from = start_line_offset(self.start_line());
        out.reserve(self.body.end as usize - from + 256);
        write_spliced(buf, from, self.body.end as usize, &splices, out);
        Ok(())
    }
}

/// Where the start line begins (after any leading CRLFs).
pub(crate) fn start_line_offset(start: &StartLine) -> usize {
    let span: Span = match *start {
        StartLine::Request { method_span, .. } => method_span,
        StartLine::Response { version, .. } => version,
    };
    span.start as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n\
v: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1 , SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
Max-Forwards:   70\r\n\
Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn msg(text: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(text.as_bytes())).expect("valid message")
    }

    fn write(m: &Message, edits: &[Edit<'_>]) -> String {
        let mut out = BytesMut::new();
        m.write(edits, &mut out).expect("edits apply");
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn no_edits_is_byte_exact() {
        let m = msg(INVITE);
        assert_eq!(write(&m, &[]), INVITE);
        // Bytes after the body are not forwarded.
        let m = msg(&format!("{INVITE}garbage"));
        assert_eq!(write(&m, &[]), INVITE);
    }

    #[test]
    fn forwarding_edits() {
        let m = msg(INVITE);
        let out = write(
            &m,
            &[
                Edit::PushVia(b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnew"),
                Edit::SetMaxForwards(69),
                Edit::AddRecordRoute(b"<sip:192.0.2.1;lr>"),
                Edit::RemoveTopRoute,
                Edit::ViaReceived("198.51.100.7:40000".parse().unwrap()),
            ],
        );
        let want = INVITE
            .replace(
                "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n",
                "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport=40000;received=198.51.100.7\r\n",
            )
            .replace("Max-Forwards:   70", "Max-Forwards:   69")
            .replace("Route: <sip:edge.example.com;lr>, <sip:core", "Route: <sip:core")
            .replace("Content-Length: 4\r\n\r\n", "Content-Length: 4\r\nRecord-Route: <sip:192.0.2.1;lr>\r\n\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn remove_routes_across_fields() {
        let base = INVITE.replace(
            "Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n",
            "Route: <sip:a;lr>, <sip:b;lr>\r\nRoute: <sip:c;lr>\r\n",
        );
        let m = msg(&base);
        let two = write(&m, &[Edit::RemoveRoutes(2)]);
        assert_eq!(two, base.replace("Route: <sip:a;lr>, <sip:b;lr>\r\n", ""));
        let one = write(&m, &[Edit::RemoveRoutes(1)]);
        assert_eq!(one, base.replace("<sip:a;lr>, ", ""));
        let three = write(&m, &[Edit::RemoveRoutes(3)]);
        assert!(!three.contains("Route:"));
        assert_eq!(
            m.write(&[Edit::RemoveRoutes(4)], &mut BytesMut::new()),
            Err(EditError::NoRoute)
        );
    }

    #[test]
    fn strict_router_edits() {
        let base = INVITE.replace(
            "Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n",
            "Route: <sip:a;lr>, <sip:b>\r\nRoute: <sip:c>\r\n",
        );
        let m = msg(&base);
        assert_eq!(
            write(&m, &[Edit::RemoveLastRoute]),
            base.replace("Route: <sip:c>\r\n", "")
        );
        let one_field = msg(&base.replace("Route: <sip:c>\r\n", ""));
        assert!(write(&one_field, &[Edit::RemoveLastRoute]).contains("Route: <sip:a;lr>\r\n"));
        assert_eq!(
            write(&m, &[Edit::AppendRoute(b"<sip:target>")]),
            base.replace(
                "Route: <sip:c>\r\n",
                "Route: <sip:c>\r\nRoute: <sip:target>\r\n"
            )
        );
    }

    #[test]
    fn remove_top_via_value_and_field() {
        let m = msg(INVITE);
        let out = write(&m, &[Edit::RemoveTopVia]);
        assert!(!out.contains("pc33.atlanta.example.com;branch"));
        assert!(out.starts_with(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\r\nv: SIP/2.0/UDP 10.0.0.1:5070"
        ));
        let again = msg(&out);
        assert_eq!(again.top_via().host(), b"10.0.0.1");
        let out = write(&again, &[Edit::RemoveTopVia]);
        assert!(
            out.contains("\r\nv: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n"),
            "{out}"
        );
    }

    #[test]
    fn max_forwards_added_when_absent_and_uri_replaced() {
        let text = INVITE.replace("Max-Forwards:   70\r\n", "");
        let m = msg(&text);
        let out = write(
            &m,
            &[
                Edit::SetMaxForwards(70),
                Edit::SetRequestUri(b"sip:+15551234567@192.0.2.9:5080"),
            ],
        );
        assert!(out.starts_with("INVITE sip:+15551234567@192.0.2.9:5080 SIP/2.0\r\n"));
        assert!(out.ends_with("Content-Length: 4\r\nMax-Forwards: 70\r\n\r\nv=0\n"));
        assert_eq!(msg(&out).max_forwards(), Some(70));
    }

    #[test]
    fn record_route_goes_above_existing_ones() {
        let text = INVITE.replace(
            "Call-ID:",
            "Record-Route: <sip:p2.example.com;lr>\r\nCall-ID:",
        );
        let m = msg(&text);
        let out = write(&m, &[Edit::AddRecordRoute(b"<sip:p1;lr>")]);
        assert!(
            out.contains("Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2.example.com;lr>\r\n")
        );
        let rr: Vec<_> = msg(&out)
            .record_routes()
            .map(|r| r.unwrap().uri().host().to_vec())
            .collect();
        assert_eq!(rr, vec![b"p1".to_vec(), b"p2.example.com".to_vec()]);
    }

    #[test]
    fn received_rules() {
        // Same IP as sent-by, no rport: nothing to add.
        let text = INVITE.replace(
            "pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport",
            "192.0.2.5;branch=z9hG4bK7",
        );
        let m = msg(&text);
        assert_eq!(
            write(&m, &[Edit::ViaReceived("192.0.2.5:5060".parse().unwrap())]),
            text
        );
        // IPv4-mapped source counts as the same address.
        assert_eq!(
            write(
                &m,
                &[Edit::ViaReceived(
                    "[::ffff:192.0.2.5]:5060".parse().unwrap()
                )]
            ),
            text
        );
        // Existing received is replaced; IPv6 is written without brackets (RFC 3261 ABNF).
        let text = INVITE.replace(";rport\r\n", ";received=10.9.9.9\r\n");
        let out = write(
            &msg(&text),
            &[Edit::ViaReceived("[2001:db8::1]:5060".parse().unwrap())],
        );
        assert!(
            out.contains(";branch=z9hG4bK776asdhds;received=2001:db8::1\r\n"),
            "{out}"
        );
    }

    #[test]
    fn errors() {
        let m = msg(&INVITE.replace(
            "Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>\r\n",
            "",
        ));
        assert_eq!(
            m.write(&[Edit::RemoveTopRoute], &mut BytesMut::new()),
            Err(EditError::NoRoute)
        );
        let m = msg(INVITE);
        assert_eq!(
            m.write(
                &[
                    Edit::RemoveTopVia,
                    Edit::ViaReceived("1.1.1.1:1".parse().unwrap())
                ],
                &mut BytesMut::new()
            ),
            Err(EditError::Overlap)
        );
        let resp = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!(
            resp.write(&[Edit::SetRequestUri(b"sip:x")], &mut BytesMut::new()),
            Err(EditError::NotARequest)
        );
    }
}
