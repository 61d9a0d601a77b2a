//! The SIP message layer: zero-copy parsing, typed views, edits applied on write, response
//! building and stream framing.
//!
//! A received message is one [`bytes::Bytes`] plus an index of [`Span`]s into it. Nothing in
//! here performs I/O, spawns tasks or reads the clock: bytes in, bytes (or typed views) out.
//! Every byte that no [`Edit`] touches is written out exactly as it was received.

mod edit;
mod error;
mod framing;
mod header;
mod message;
mod parse;
mod request;
mod response;
mod uri;
mod value;

pub use edit::{Edit, EditError};
pub use error::ParseError;
pub use framing::{Frame, StreamFramer};
pub use header::HeaderName;
pub use message::{
    CSeq, Header, Message, Method, NameAddr, NameAddrs, RawMessage, Rejected, StartLine, Transport,
    Via,
};
pub use parse::{Framing, Limits, MAX_HEADERS, MAX_LINE_LEN, MAX_MESSAGE_SIZE};
pub use request::{ack_for, cancel_for, options_probe};
pub use response::{reason_phrase, response_destination, ResponseBuilder};
pub use uri::{unescape, Scheme, Uri};
pub use value::Rport;

/// A half-open byte range `[start, end)` into a message buffer.
///
/// Offsets are `u32`: the message size limit keeps every offset far below `u32::MAX`, and a
/// span is half the size of a `Range<usize>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    #[inline]
    pub(crate) const fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub const fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub const fn is_empty(self) -> bool {
        self.end <= self.start
    }

    /// The bytes this span covers in `buf`; empty when the span lies outside it.
    #[inline]
    pub fn slice(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}
