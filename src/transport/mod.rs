//! Sockets: the UDP and TCP listeners that feed the proxy core, the egress pool vendors see,
//! outbound connections, and the dispatcher that sends what the core returns. Everything
//! here is I/O; no SIP decision is made in this module.

mod connector;
pub mod dispatch;
pub mod egress;
pub mod tcp;
pub mod udp;

pub use dispatch::{run_timers, Dispatcher};
