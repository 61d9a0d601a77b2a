//! The proxy: what the edge answers and forwards, decided without I/O. The core takes a
//! message with its source, local address and transport, and the time, and returns the
//! messages to send; sockets live in [`crate::transport`].
//!
//! - `core`: the front door (ACL, RFC 3261 16.3 validation, the edge's own answers).
//! - `forward`: transaction-stateful forwarding to vendors and in-dialog routing.
//! - [`transaction`]: the RFC 3261 section 17 state machines (timers only).
//! - [`dialog`]: the stateless Record-Route token.
//! - `io`: the types exchanged with the transport layer.
//!
//! It must never block, never answer a response or an ACK, and never keep dialog state.

mod core;
pub mod dialog;
mod forward;
mod io;
pub mod transaction;

pub use self::core::{Core, CoreSettings, ALLOW};
pub use forward::{Caller, ForwardSettings, Forwarder, ListenerFace};
pub use io::{BranchRef, ConnId, Face, Inbound, Send, Sends, Side};
