//! Stream framing under arbitrary segmentation.
//!
//! The input is a control prefix and a stream. The prefix chooses how the stream arrives:
//! in chunks of chosen lengths, or one byte at a time. Whatever the segmentation, the framer
//! must yield exactly what it yields when the stream arrives in one piece: the same messages
//! (as bytes), the same pings, the same final error, and the same bytes left over.
//!
//! Input layout: `control`, then `control & 0x1f` little-endian `u16` chunk lengths (each
//! taken modulo what is left plus one, so zero-length chunks happen), then the stream. The
//! last chunk is whatever the lengths did not cover. When `control & 0x80` is set, the
//! stream is fed one byte at a time instead.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warp_edge::sip::{Frame, Framing, Limits, Message, ParseError, RawMessage, StreamFramer};

/// Small limits so that inputs of a few KiB reach every limit check; the checks scale, the
/// logic is the same as with the defaults. Every seed message fits in them.
const LIMITS: Limits = Limits {
    max_message_size: 1024,
    max_headers: 24,
    max_line_len: 256,
};

const MAX_CHUNKS: u8 = 0x1f;
const BYTEWISE: u8 = 0x80;

/// What came off the stream, in order.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Message(Vec<u8>),
    Ping,
    Error(ParseError),
}

/// Everything a framer yielded, and how many bytes it still held at the end (`None` once it
/// failed: then how much had arrived depends on the segmentation).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    seen: Vec<Seen>,
    buffered: Option<usize>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let mut lengths = Vec::new();
    for _ in 0..(control & MAX_CHUNKS) {
        let [lo, hi, tail @ ..] = rest else { break };
        lengths.push(usize::from(u16::from_le_bytes([*lo, *hi])));
        rest = tail;
    }
    let stream = rest;

    let mut chunks: Vec<&[u8]> = Vec::new();
    if control & BYTEWISE != 0 {
        chunks.extend(stream.chunks(1));
    } else {
        let mut left = stream;
        for length in lengths {
            let (chunk, tail) = left.split_at(length % (left.len() + 1));
            chunks.push(chunk);
            left = tail;
        }
        chunks.push(left);
    }

    let whole = feed(&[stream]);
    let split = feed(&chunks);
    assert_eq!(
        whole,
        split,
        "segmentation changed the frames; chunk lengths {:?}",
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
    );
});

/// Feeds `chunks` one after another, taking every frame that is ready after each.
fn feed(chunks: &[&[u8]]) -> Outcome {
    let mut framer = StreamFramer::new(LIMITS);
    let mut seen = Vec::new();
    for chunk in chunks {
        framer.extend(chunk);
        loop {
            match framer.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Ping)) => seen.push(Seen::Ping),
                Ok(Some(Frame::Message(raw))) => {
                    check_framed(&raw);
                    seen.push(Seen::Message(raw.bytes().to_vec()));
                }
                Err(error) => {
                    // A broken stream stays broken, whatever arrives next.
                    framer.extend(b"\r\n\r\n");
                    assert_eq!(framer.next_frame().err(), Some(error));
                    seen.push(Seen::Error(error));
                    return Outcome {
                        seen,
                        buffered: None,
                    };
                }
            }
        }
    }
    Outcome {
        seen,
        buffered: Some(framer.buffered()),
    }
}

/// A framed message is exactly one message: scanning its bytes as a stream message gives
/// the same body, and validating it does not panic.
fn check_framed(raw: &RawMessage) {
    let rescanned = match RawMessage::scan(raw.bytes().clone(), Framing::Stream, &LIMITS) {
        Ok(rescanned) => rescanned,
        Err(e) => panic!("a framed message does not scan: {e:?}\n{:?}", raw.bytes()),
    };
    assert_eq!(rescanned.body(), raw.body());
    assert_eq!(
        raw.content_length().map(|cl| cl as usize),
        Some(raw.body().len())
    );
    assert_eq!(
        raw.body().as_ptr_range().end,
        raw.bytes().as_ptr_range().end,
        "a framed message has bytes past its body"
    );
    let _ = Message::validate(raw.clone());
}
