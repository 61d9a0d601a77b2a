//! warp-edge: the SIP edge proxy of the WARP wholesale trunking platform.
//!
//! # Layout
//! - [`sip`]: the message layer: zero-copy parsing over one `Bytes`, typed views, edits
//!   applied on write, response building and TCP/TLS stream framing. No I/O.
//! - [`acl`]: who is calling: rules from the trunks file (and later PostgreSQL and Redis)
//!   compiled into an immutable longest-prefix-match snapshot swapped atomically.
//! - [`cli`]: the command line, parsed by clap; `main.rs` only dispatches it.

#![forbid(unsafe_code)]

pub mod acl;
pub mod cli;
pub mod sip;
