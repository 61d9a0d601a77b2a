//! The SIP message layer on the forwarding hot path: parse and index a received message, and
//! write an INVITE out with the four forwarding edits; plus rsip 0.4 parsing the same INVITE,
//! for scale. Results and the exact command are recorded in BENCHMARKS.md.
//!
//! With `WARP_EDGE_BENCH_LOOP=<case>:<iterations>` the binary runs one case in a plain loop
//! instead, for `perf stat -e task-clock` (CPU time per operation) and `valgrind
//! --tool=callgrind` (instructions per operation): figures that, unlike criterion's wall-clock
//! times, hold up on a machine that is busy with other work. Cases: `invite`, `200_ok`, `bye`,
//! `write`, `rsip`.

use std::convert::TryFrom;
use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, Criterion};
use rsip::prelude::*;
use warp_edge::sip::{Edit, Message};

/// A carrier-style initial INVITE with an SDP offer (785 bytes; the issue asks for 700-800).
const INVITE: &str = concat!(
    "INVITE sip:+15551234567@198.51.100.20 SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 203.0.113.45:5060;rport;branch=z9hG4bK3f9c2d1e8b\r\n",
    "Max-Forwards: 70\r\n",
    "Route: <sip:edge1.warp.example;lr>\r\n",
    "From: \"ACME\" <sip:+14155550123@203.0.113.45>;tag=as7d9f2c1e\r\n",
    "To: \"Bob\" <sip:+15551234567@198.51.100.20>\r\n",
    "Call-ID: 4f3c2a1b9e8d@203.0.113.45\r\n",
    "CSeq: 102 INVITE\r\n",
    "Contact: <sip:+14155550123@203.0.113.45:5060>\r\n",
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n",
    "Supported: timer\r\n",
    "P-Asserted-Identity: <sip:+14155550123@203.0.113.45>\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 243\r\n",
    "\r\n",
    "v=0\r\n",
    "o=- 1712345678 1 IN IP4 203.0.113.45\r\n",
    "s=-\r\n",
    "c=IN IP4 203.0.113.46\r\n",
    "t=0 0\r\n",
    "m=audio 16384 RTP/AVP 0 8 18 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:18 G729/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
);

/// The callee's answer, as it comes back through the edge.
const OK_200: &str = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP 203.0.113.45:5060;rport=5060;received=203.0.113.45;branch=z9hG4bK3f9c2d1e8b\r\n",
    "Record-Route: <sip:edge1.warp.example;lr>\r\n",
    "From: \"ACME\" <sip:+14155550123@203.0.113.45>;tag=as7d9f2c1e\r\n",
    "To: \"Bob\" <sip:+15551234567@198.51.100.20>;tag=7c1e9a2b\r\n",
    "Call-ID: 4f3c2a1b9e8d@203.0.113.45\r\n",
    "CSeq: 102 INVITE\r\n",
    "Contact: <sip:+15551234567@198.51.100.20:5060>\r\n",
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n",
    "Supported: timer\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 190\r\n",
    "\r\n",
    "v=0\r\n",
    "o=- 88213 1 IN IP4 198.51.100.20\r\n",
    "s=-\r\n",
    "c=IN IP4 198.51.100.21\r\n",
    "t=0 0\r\n",
    "m=audio 20000 RTP/AVP 0 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=ptime:20\r\n",
);

/// An in-dialog BYE from the callee.
const BYE: &str = concat!(
    "BYE sip:+14155550123@203.0.113.45:5060 SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 198.51.100.20:5060;rport;branch=z9hG4bK77e1c0d2\r\n",
    "Max-Forwards: 70\r\n",
    "Route: <sip:edge1.warp.example;lr>\r\n",
    "From: \"Bob\" <sip:+15551234567@198.51.100.20>;tag=7c1e9a2b\r\n",
    "To: \"ACME\" <sip:+14155550123@203.0.113.45>;tag=as7d9f2c1e\r\n",
    "Call-ID: 4f3c2a1b9e8d@203.0.113.45\r\n",
    "CSeq: 2 BYE\r\n",
    "Content-Length: 0\r\n",
    "\r\n",
);

/// What the edge does to an INVITE it forwards.
const FORWARDING_EDITS: [Edit<'static>; 4] = [
    Edit::PushVia(b"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKwe1a2b3c4d"),
    Edit::SetMaxForwards(69),
    Edit::AddRecordRoute(b"<sip:192.0.2.10;lr>"),
    Edit::RemoveTopRoute,
];

fn parse(c: &mut Criterion) {
    assert!(
        (700..=800).contains(&INVITE.len()),
        "the INVITE must be 700-800 bytes, is {}",
        INVITE.len()
    );
    let mut group = c.benchmark_group("parse");
    for (name, text) in [("invite", INVITE), ("200_ok", OK_200), ("bye", BYE)] {
        // Heap-backed like a received datagram; the first clone (just below) makes it shared,
        // so each clone in the loop is one atomic increment, and each drop one decrement.
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let msg = Message::parse(bytes.clone()).expect("fixture parses");
        let mut out = BytesMut::new();
        msg.write(&[], &mut out).expect("no edits");
        assert_eq!(&out[..], text.as_bytes(), "{name} must round-trip");
        group.bench_function(name, |b| {
            b.iter(|| Message::parse(black_box(bytes.clone())))
        });
    }
    group.finish();
}

fn write(c: &mut Criterion) {
    let msg = Message::parse(Bytes::from_static(INVITE.as_bytes())).expect("INVITE parses");
    let mut out = BytesMut::with_capacity(2048);
    msg.write(&FORWARDING_EDITS, &mut out).expect("edits apply");
    let forwarded = Message::parse(out.split().freeze()).expect("forwarded INVITE parses");
    assert_eq!(forwarded.top_via().host(), b"192.0.2.10");
    assert_eq!(forwarded.max_forwards(), Some(69));
    assert_eq!(forwarded.routes().count(), 0);
    assert_eq!(forwarded.record_routes().count(), 1);

    c.bench_function("write/invite_forwarding_edits", |b| {
        b.iter(|| {
            out.clear();
            msg.write(black_box(&FORWARDING_EDITS), &mut out)
                .expect("edits apply");
            black_box(out.len())
        })
    });
}

/// rsip's `TryFrom<&[u8]>` stores every header as an owned String and parses nothing inside
/// them; the second bench adds the typed lookups that `Message::parse` has already done
/// (Via, From, To, CSeq, Max-Forwards), which is the like-for-like figure.
fn rsip(c: &mut Criterion) {
    let bytes = Bytes::from_static(INVITE.as_bytes());
    let parsed = rsip::SipMessage::try_from(&bytes[..]).expect("rsip parses the INVITE");
    assert_eq!(parsed.to_string(), INVITE, "rsip round-trips this INVITE");

    let mut group = c.benchmark_group("rsip");
    group.bench_function("parse_invite", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(&bytes[..])))
    });
    group.bench_function("parse_invite_typed", |b| {
        b.iter(|| {
            let msg = rsip::SipMessage::try_from(black_box(&bytes[..])).expect("parses");
            let via = msg.via_header().and_then(|h| h.typed()).expect("Via");
            let from = msg.from_header().and_then(|h| h.typed()).expect("From");
            let to = msg.to_header().and_then(|h| h.typed()).expect("To");
            let cseq = msg.cseq_header().and_then(|h| h.typed()).expect("CSeq");
            let max_forwards = msg
                .max_forwards_header()
                .and_then(|h| h.num())
                .expect("Max-Forwards");
            black_box((via, from, to, cseq, max_forwards))
        })
    });
    group.finish();
}

criterion_group!(benches, parse, write, rsip);

/// Runs `case` `iterations` times with no measurement of its own (see the module docs).
fn plain_loop(case: &str, iterations: usize) {
    let text = match case {
        "invite" | "write" | "rsip" => INVITE,
        "200_ok" => OK_200,
        "bye" => BYE,
        other => panic!("unknown case {other:?}: invite, 200_ok, bye, write or rsip"),
    };
    let bytes = Bytes::copy_from_slice(text.as_bytes());
    let msg = Message::parse(bytes.clone()).expect("fixture parses");
    let mut out = BytesMut::with_capacity(2048);
    let done = match case {
        "write" => (0..iterations)
            .filter(|_| {
                out.clear();
                msg.write(black_box(&FORWARDING_EDITS), &mut out).is_ok()
            })
            .count(),
        "rsip" => (0..iterations)
            .filter(|_| rsip::SipMessage::try_from(black_box(&bytes[..])).is_ok())
            .count(),
        _ => (0..iterations)
            .filter(|_| Message::parse(black_box(bytes.clone())).is_ok())
            .count(),
    };
    assert_eq!(done, iterations);
}

fn main() {
    if let Ok(spec) = std::env::var("WARP_EDGE_BENCH_LOOP") {
        let (case, iterations) = spec
            .split_once(':')
            .and_then(|(case, n)| Some((case, n.parse().ok()?)))
            .expect("WARP_EDGE_BENCH_LOOP=<case>:<iterations>");
        plain_loop(case, iterations);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
