//! Datagram parsing, round trip and forwarding edits on arbitrary bytes.
//!
//! Never panics; whatever scans can be answered with a 400 that scans; whatever validates
//! writes out to bytes that parse back to the same index, and still parses after the
//! forwarding edits with exactly one more Via.

#![no_main]

use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warp_edge::sip::{
    Edit, Framing, HeaderName, Limits, Message, ParseError, RawMessage, ResponseBuilder, Rport,
    StartLine, MAX_MESSAGE_SIZE,
};

/// The Via this "proxy" pushes and the Record-Route it adds.
const PUSHED_VIA: &[u8] = b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz.edge.1";
const RECORD_ROUTE: &[u8] = b"<sip:192.0.2.1:5060;lr>";

fuzz_target!(|data: &[u8]| {
    // The source address alternates between families so both ways of writing `received`
    // are exercised; it depends on the input only, so a crash reproduces.
    let source: SocketAddr = if data.len() % 2 == 0 {
        SocketAddr::from(([198, 51, 100, 7], 40000))
    } else {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7], 40001))
    };
    let Ok(raw) = RawMessage::scan(
        Bytes::copy_from_slice(data),
        Framing::Datagram,
        &Limits::default(),
    ) else {
        return;
    };
    match Message::validate(raw) {
        Ok(msg) => {
            check_bad_request(msg.raw(), None, source);
            check_round_trip(&msg);
            check_forwarding(&msg, source);
            check_remove_top_via(&msg);
        }
        Err(rejected) => check_bad_request(&rejected.raw, Some(rejected.error), source),
    }
});

/// The parts of a scanned message that must survive a write, as bytes.
#[derive(Debug, PartialEq, Eq)]
struct Index<'a> {
    start: [&'a [u8]; 3],
    status: Option<u16>,
    headers: Vec<(HeaderName, &'a [u8], &'a [u8])>,
    content_length: Option<u32>,
    body: &'a [u8],
}

impl<'a> Index<'a> {
    fn of(raw: &'a RawMessage) -> Index<'a> {
        let start = match *raw.start_line() {
            StartLine::Request {
                method_span,
                uri,
                version,
                ..
            } => [raw.slice(method_span), raw.slice(uri), raw.slice(version)],
            StartLine::Response {
                version, reason, ..
            } => [raw.slice(version), b"", raw.slice(reason)],
        };
        Index {
            start,
            status: raw.status(),
            headers: raw
                .headers()
                .iter()
                .map(|h| (h.name, raw.slice(h.name_span), raw.slice(h.value)))
                .collect(),
            content_length: raw.content_length(),
            body: raw.body(),
        }
    }
}

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// True when a comma-separated header value holds at least one element: any byte other than
/// a comma or white space belongs to one.
fn has_element(value: &[u8]) -> bool {
    value
        .iter()
        .any(|b| !matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n'))
}

/// A 400 can be built from anything that scanned, and it scans in turn.
fn check_bad_request(raw: &RawMessage, error: Option<ParseError>, source: SocketAddr) {
    let reason = error.map_or_else(|| "Bad Request".to_owned(), |e| e.to_string());
    let response = ResponseBuilder::new(raw, 400)
        .reason(&reason)
        .to_tag(b"fuzz-tag")
        .source(source)
        .build();
    let len = response.len();
    match RawMessage::scan(response.clone(), Framing::Datagram, &limits_for_output()) {
        Ok(scanned) => assert_eq!(scanned.status(), Some(400), "{response:?}"),
        Err(ParseError::TooLarge { .. }) if len > MAX_MESSAGE_SIZE => {}
        Err(e) => panic!("the 400 built from a scanned message does not scan: {e:?}\n{response:?}"),
    }
}

/// The parser's limits bound what the edge accepts, not what it emits after adding its own
/// fields: forwarding adds up to three header fields (Via, Record-Route, Max-Forwards) and
/// lengthens the top Via line by `;rport=65535;received=<IPv6>`, and a 400 lengthens it the
/// same way. Outputs are re-read with the limits widened by exactly that room (Kamailio,
/// likewise, does not refuse to forward a message its own additions push past a limit).
fn limits_for_output() -> Limits {
    let base = Limits::default();
    Limits {
        max_message_size: base.max_message_size + 1024,
        max_headers: base.max_headers + 3,
        max_line_len: base.max_line_len + 128,
    }
}

/// No edits: the output is the message from its start line to the end of its body, byte for
/// byte, and it parses back to the same index.
fn check_round_trip(msg: &Message) {
    let mut out = BytesMut::new();
    msg.write(&[], &mut out).expect("no edits cannot fail");
    let bytes = msg.bytes();
    let from = match *msg.start_line() {
        StartLine::Request { method_span, .. } => method_span.start as usize,
        StartLine::Response { version, .. } => version.start as usize,
    };
    let to = offset_in(bytes, msg.body()) + msg.body().len();
    assert_eq!(
        &out[..],
        &bytes[from..to],
        "write with no edits is not byte-exact"
    );
    let again = match Message::parse(out.freeze()) {
        Ok(again) => again,
        Err(e) => panic!("written message does not parse again: {e:?}"),
    };
    assert_eq!(Index::of(msg.raw()), Index::of(again.raw()));
}

/// The edits a proxy makes to a request it forwards, applied to whatever validated.
fn check_forwarding(msg: &Message, source: SocketAddr) {
    let max_forwards = msg.max_forwards().map_or(70, |n| n.saturating_sub(1));
    let first_route = msg.headers().iter().find(|h| h.name == HeaderName::Route);
    let mut edits = vec![
        Edit::PushVia(PUSHED_VIA),
        Edit::SetMaxForwards(max_forwards),
        Edit::AddRecordRoute(RECORD_ROUTE),
        Edit::ViaReceived(source),
    ];
    if first_route.is_some() {
        edits.push(Edit::RemoveTopRoute);
    }
    let mut out = BytesMut::new();
    if let Err(e) = msg.write(&edits, &mut out) {
        panic!("forwarding edits refused: {e:?}");
    }
    let out = out.freeze();
    let fwd = match Message::parse_with(out.clone(), Framing::Datagram, &limits_for_output()) {
        Ok(fwd) => fwd,
        Err(e) => panic!("forwarded message does not parse: {e:?}\n{out:?}"),
    };

    let vias = msg.vias().count();
    assert_eq!(fwd.vias().count(), vias + 1, "Via count\n{out:?}");
    assert_eq!(fwd.top_via().as_bytes(), PUSHED_VIA);
    assert_eq!(fwd.max_forwards(), Some(max_forwards));
    assert_eq!(fwd.body(), msg.body());
    assert_eq!(fwd.call_id(), msg.call_id());
    assert_eq!(fwd.cseq(), msg.cseq());

    let record_routes = msg.record_routes().count();
    assert_eq!(fwd.record_routes().count(), record_routes + 1);
    match fwd.record_routes().next() {
        Some(Ok(rr)) => assert_eq!(rr.as_bytes(), RECORD_ROUTE),
        other => panic!("added Record-Route is not on top: {other:?}"),
    }

    // RemoveTopRoute takes one entry when the first Route field has one, else the empty field.
    let routes = msg.routes().count();
    let removed = first_route.is_some_and(|h| has_element(msg.slice(h.value)));
    assert_eq!(
        fwd.routes().count(),
        routes - usize::from(removed),
        "Route count\n{out:?}"
    );

    // The received top Via, now second, says where the request came from.
    let before = msg.top_via();
    let after = match fwd.vias().nth(1) {
        Some(Ok(via)) => via,
        other => panic!("the received Via no longer parses: {other:?}\n{out:?}"),
    };
    let canonical = |ip: IpAddr| ip.to_canonical();
    let rport_requested = before.rport() == Rport::Requested;
    if rport_requested {
        assert_eq!(after.rport(), Rport::Value(source.port()), "{out:?}");
    } else {
        assert_eq!(after.rport(), before.rport());
    }
    if rport_requested || before.ip().map(canonical) != Some(canonical(source.ip())) {
        let want = canonical(source.ip()).to_string();
        assert_eq!(after.received(), Some(want.as_bytes()), "{out:?}");
    } else {
        assert_eq!(after.received(), before.received());
    }
    assert_eq!(after.branch(), before.branch());
    assert_eq!(after.host(), before.host());
    assert_eq!(after.port(), before.port());
}

/// The edit for a response on its way back: the next Via becomes the top one.
fn check_remove_top_via(msg: &Message) {
    let mut out = BytesMut::new();
    if let Err(e) = msg.write(&[Edit::RemoveTopVia], &mut out) {
        panic!("RemoveTopVia refused: {e:?}");
    }
    let out = out.freeze();
    if let Err(e) = RawMessage::scan(out.clone(), Framing::Datagram, &Limits::default()) {
        panic!("message without its top Via does not scan: {e:?}\n{out:?}");
    }
    // Validation reads the first Via field, so the result validates only when no Via field is
    // empty (`Via: ,`) and the next value is well formed.
    let vias: Vec<_> = msg.vias().map(|v| v.map(|v| v.as_bytes())).collect();
    let no_empty_via = msg
        .headers_named(HeaderName::Via)
        .all(|h| has_element(msg.slice(h.value)));
    if let ([_, Ok(next), ..], true) = (&vias[..], no_empty_via) {
        let popped = match Message::parse(out.clone()) {
            Ok(popped) => popped,
            Err(e) => panic!("message without its top Via does not parse: {e:?}\n{out:?}"),
        };
        assert_eq!(popped.vias().count(), vias.len() - 1, "Via count\n{out:?}");
        assert_eq!(popped.top_via().as_bytes(), *next);
    }
}
