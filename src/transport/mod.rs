//! Sockets: the UDP and TCP listeners that feed the proxy core and send what it returns.
//! Everything here is I/O; no SIP decision is made in this module.

pub mod tcp;
pub mod udp;
