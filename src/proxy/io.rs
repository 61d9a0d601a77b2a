//! What the proxy core exchanges with the transport layer: where a message came from
//! ([`Inbound`]) and what to send where ([`Send`]). The core names sockets by role (a
//! listener or an egress address) and by local address; the transport layer owns the
//! sockets and connections behind those names.

use std::net::SocketAddr;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::acl::rules::Proto;

/// A TCP connection, numbered by the transport layer.
pub type ConnId = u64;

/// Which side of the edge a socket faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// A customer-facing listener (ACL applies).
    Listener,
    /// Egress pool address `n`, facing vendors.
    Egress(usize),
}

/// A local sending point: a side, the local address, and the TCP connection to use when it
/// is still open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Face {
    pub side: Side,
    /// UDP sends from this address; a new TCP connection binds its IP.
    pub local: SocketAddr,
    pub conn: Option<ConnId>,
}

/// Where a message came from and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub source: SocketAddr,
    /// The local address it arrived on (dedicated-IP customers are recognised by it).
    pub local: SocketAddr,
    pub transport: Proto,
    pub side: Side,
    /// The TCP connection it came on.
    pub conn: Option<ConnId>,
}

impl Inbound {
    /// The face to answer on: the same socket or connection.
    pub fn face(&self) -> Face {
        Face {
            side: self.side,
            local: self.local,
            conn: self.conn,
        }
    }
}

/// A client branch, so the transport layer can report a failed TCP connect against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchRef {
    pub(crate) txn: u64,
    pub(crate) branch: u8,
}

/// One message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Send {
    pub face: Face,
    pub to: SocketAddr,
    pub transport: Proto,
    pub bytes: Bytes,
    /// Set on requests a failed connection must be reported for.
    pub branch: Option<BranchRef>,
}

pub type Sends = SmallVec<[Send; 2]>;
