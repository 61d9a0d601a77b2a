//! The proxy: what the edge answers, decided without I/O. The core takes a message with its
//! source, local address and transport, and returns the replies to send; sockets live in
//! [`crate::transport`].
//!
//! It must never block, never allocate per message beyond the reply it builds, and never
//! answer a response or an ACK.

mod core;
pub mod dialog;
pub mod transaction;

pub use self::core::{Core, CoreSettings, Inbound, Replies, Reply, ALLOW};
