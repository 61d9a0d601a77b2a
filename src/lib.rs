//! warp-edge: the SIP edge proxy of the WARP wholesale trunking platform.
//!
//! # Layout
//! - [`sip`]: the message layer: zero-copy parsing over one `Bytes`, typed views, edits
//!   applied on write, response building and TCP/TLS stream framing. No I/O.
//! - [`acl`]: who is calling: rules from the trunks file, PostgreSQL and Redis compiled into
//!   an immutable longest-prefix-match snapshot, swapped atomically on reload.
//! - [`proxy`]: what the edge answers, decided without I/O (ACL, RFC 3261 16.3 validation).
//! - [`route`]: vendor gateways: attempt order, failover triggers, best response, health.
//! - [`transport`]: UDP and TCP listeners feeding the proxy core.
//! - [`telemetry`]: metric names and handles, tracing, the admin HTTP endpoint.
//! - [`config`]: the TOML config and trunks file, validated into typed structs.
//! - [`edge`]: assembly: binds everything, starts the tasks, runs until SIGTERM.
//! - [`cli`]: the command line; `main.rs` only dispatches it.

#![forbid(unsafe_code)]

pub mod acl;
pub mod cli;
pub mod config;
pub mod edge;
pub mod proxy;
pub mod route;
pub mod sip;
pub mod telemetry;
pub mod transport;
