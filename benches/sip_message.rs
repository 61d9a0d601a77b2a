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
use warp_edge::sip::Message;

/// A carrier-style initial INVITE with an SDP offer (785 bytes; the issue asks for 700-800).
#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use fixtures::{BYE, FORWARDING_EDITS, INVITE, OK_200};

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
