//! Outbound TCP connections (to vendors, or to a customer whose connection is gone): bound
//! to the face's IP (an egress address, so vendors see a whitelisted source), then served
//! like any accepted connection. A connect that fails reports every queued request's
//! branch back to the core.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpSocket;
use tokio::sync::mpsc;

use super::dispatch::{Dispatcher, Outgoing};
use super::tcp;
use crate::proxy::{ConnId, Side};

/// How long a connect may take before the branch fails over.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn open(local_ip: Option<IpAddr>, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let socket = match to {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_nodelay(true)?;
    if let Some(ip) = local_ip.filter(|ip| ip.is_ipv4() == to.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timed out",
        )),
    }
}

pub(crate) async fn connect(
    dispatcher: Arc<Dispatcher>,
    id: ConnId,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    local_ip: Option<IpAddr>,
    to: SocketAddr,
    side: Side,
) {
    match open(local_ip, to).await {
        Ok(stream) => tcp::connection(stream, to, side, id, rx, dispatcher).await,
        Err(e) => {
            tracing::warn!(peer.addr = %to, error = %e, "tcp connect failed");
            dispatcher.unregister(id);
            rx.close();
            let mut failed = Vec::new();
            while let Ok((_, branch)) = rx.try_recv() {
                failed.extend(branch);
            }
            dispatcher.undeliverable(failed).await;
        }
    }
}
