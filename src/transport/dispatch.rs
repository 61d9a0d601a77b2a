//! The sending half of the edge: takes what the proxy core returns and puts it on the right
//! socket. UDP goes out of the listener or egress socket the core named (a wildcard listener
//! sets the source IP per datagram); TCP goes on the connection named, else on any open
//! connection to the peer (RFC 5923-style reuse), else on a new connection from the face's
//! IP. A connect that fails is reported back to the core, which fails the branch over.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{connector, udp};
use crate::acl::rules::Proto;
use crate::config::TcpConfig;
use crate::proxy::{BranchRef, ConnId, Core, Send, Sends, Side};
use crate::telemetry::Metrics;

/// A message queued for a connection, with the branch to fail if it never leaves.
pub(crate) type Outgoing = (Bytes, Option<BranchRef>);

struct Connection {
    tx: mpsc::UnboundedSender<Outgoing>,
    peer: SocketAddr,
}

#[derive(Default)]
struct Registry {
    by_id: HashMap<ConnId, Connection>,
    by_peer: HashMap<SocketAddr, ConnId>,
}

/// Sockets and connections, shared by every task of one edge.
pub struct Dispatcher {
    pub(crate) core: Arc<Core>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) tcp: TcpConfig,
    /// Listener sockets (one per listener address; SO_REUSEPORT siblings not needed to send).
    listeners_udp: Vec<Arc<UdpSocket>>,
    egress_udp: Vec<Arc<UdpSocket>>,
    egress: Vec<SocketAddr>,
    registry: Mutex<Registry>,
    next_conn: AtomicU64,
    /// Outbound connection tasks; aborted when the edge stops.
    outbound: Mutex<JoinSet<()>>,
}

impl Dispatcher {
    pub fn new(
        core: Arc<Core>,
        metrics: Arc<Metrics>,
        tcp: TcpConfig,
        listeners_udp: Vec<Arc<UdpSocket>>,
        egress_udp: Vec<Arc<UdpSocket>>,
        egress: Vec<SocketAddr>,
    ) -> Dispatcher {
        Dispatcher {
            core,
            metrics,
            tcp,
            listeners_udp,
            egress_udp,
            egress,
            registry: Mutex::new(Registry::default()),
            next_conn: AtomicU64::new(1),
            outbound: Mutex::new(JoinSet::new()),
        }
    }

    /// Stops every outbound connection.
    pub fn shutdown(&self) {
        self.outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .abort_all();
    }

    /// Registers a connection; its task reads from the returned receiver and writes.
    pub(crate) fn register(&self, peer: SocketAddr) -> (ConnId, mpsc::UnboundedReceiver<Outgoing>) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.by_id.insert(id, Connection { tx, peer });
        registry.by_peer.insert(peer, id);
        (id, rx)
    }

    pub(crate) fn unregister(&self, id: ConnId) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = registry.by_id.remove(&id) {
            if registry.by_peer.get(&conn.peer) == Some(&id) {
                registry.by_peer.remove(&conn.peer);
            }
        }
    }

    /// Sends everything the core returned.
    pub async fn dispatch(self: &Arc<Self>, sends: Sends) {
        for send in sends {
            match send.transport {
                Proto::Tcp | Proto::Tls => self.send_stream(send),
                Proto::Udp | Proto::Any => self.send_datagram(&send).await,
            }
        }
    }

    async fn send_datagram(&self, send: &Send) {
        let result = match send.face.side {
            Side::Egress(i) => match self.egress_udp.get(i) {
                Some(socket) => socket.send_to(&send.bytes, send.to).await.map(drop),
                None => return,
            },
            Side::Listener => {
                let local = send.face.local;
                let exact = self
                    .listeners_udp
                    .iter()
                    .find(|s| s.local_addr().is_ok_and(|a| a == local));
                let wildcard = || {
                    self.listeners_udp.iter().find(|s| {
                        s.local_addr().is_ok_and(|a| {
                            a.ip().is_unspecified()
                                && a.port() == local.port()
                                && a.is_ipv4() == local.is_ipv4()
                        })
                    })
                };
                if let Some(socket) = exact {
                    socket.send_to(&send.bytes, send.to).await.map(drop)
                } else if let Some(socket) = wildcard() {
                    udp::send_from(socket, &send.bytes, send.to, local.ip()).await
                } else if let Some(socket) = self.listeners_udp.first() {
                    socket.send_to(&send.bytes, send.to).await.map(drop)
                } else {
                    return;
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer.addr = %send.to, error = %e, "udp send failed");
        }
    }

    fn send_stream(self: &Arc<Self>, send: Send) {
        let item = (send.bytes, send.branch);
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let conn = send
            .face
            .conn
            .filter(|id| registry.by_id.contains_key(id))
            .or_else(|| registry.by_peer.get(&send.to).copied());
        let item = match conn.and_then(|id| registry.by_id.get(&id)) {
            Some(conn) => match conn.tx.send(item) {
                Ok(()) => return,
                Err(mpsc::error::SendError(item)) => item,
            },
            None => item,
        };
        // A new connection from the face's IP: an egress address for vendors.
        let local_ip = match send.face.side {
            Side::Egress(i) => self.egress.get(i).map(|a| a.ip()),
            Side::Listener => Some(send.face.local.ip()).filter(|ip| !ip.is_unspecified()),
        };
        drop(registry);
        let (id, rx) = self.register(send.to);
        // Queue before the connect finishes; the task writes it once connected.
        {
            let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(conn) = registry.by_id.get(&id) {
                let _ = conn.tx.send(item);
            }
        }
        let dispatcher = self.clone();
        let side = send.face.side;
        let to = send.to;
        self.outbound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(connector::connect(dispatcher, id, rx, local_ip, to, side));
    }

    /// Reports requests that could not be delivered, so their branches fail over.
    pub(crate) async fn undeliverable(self: &Arc<Self>, branches: Vec<BranchRef>) {
        for branch in branches {
            let sends = self
                .core
                .forwarder()
                .map(|f| f.transport_failed(Instant::now(), branch))
                .unwrap_or_default();
            Box::pin(self.dispatch(sends)).await;
        }
    }
}

/// Drives the core's timers: a tick every `period`, dispatching what fires.
pub async fn run_timers(dispatcher: Arc<Dispatcher>, period: std::time::Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sends = dispatcher.core.on_timer(Instant::now());
        if !sends.is_empty() {
            dispatcher.dispatch(sends).await;
        }
    }
}
