//! TCP listeners: accept within a connection limit, frame each stream with
//! [`StreamFramer`], answer on the same connection. A stream that cannot be framed closes
//! that connection only; an idle connection is closed after the configured time. The
//! connections belong to their listener's task: when it stops, they close.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::acl::rules::Proto;
use crate::config::TcpConfig;
use crate::proxy::{Core, Inbound};
use crate::sip::{Frame, StreamFramer};
use crate::telemetry::Metrics;

/// Binds a TCP listener (with `SO_REUSEADDR`, so a restart does not wait for TIME_WAIT).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Accepts connections until the task is dropped; dropping it closes every connection too
/// (they live in its `JoinSet`), so a stopped edge answers nothing more.
pub async fn serve(
    listener: TcpListener,
    core: Arc<Core>,
    metrics: Arc<Metrics>,
    config: TcpConfig,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.tcp_refused.increment(1);
            tracing::warn!(peer.addr = %peer, limit = config.max_connections, "tcp connection refused: limit reached");
            continue;
        };
        metrics.tcp_accepted.increment(1);
        stream.set_nodelay(true).ok();
        connections.spawn(connection(
            stream,
            peer,
            core.clone(),
            metrics.clone(),
            config.clone(),
            permit,
        ));
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    core: Arc<Core>,
    metrics: Arc<Metrics>,
    config: TcpConfig,
    _permit: OwnedSemaphorePermit,
) {
    metrics.tcp_open.increment(1.0);
    let Ok(local) = stream.local_addr() else {
        metrics.tcp_open.decrement(1.0);
        return;
    };
    let inbound = Inbound {
        source: peer,
        local,
        transport: Proto::Tcp,
    };
    let mut framer = StreamFramer::new(*core.limits());
    let outcome = async {
        loop {
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(raw))) => {
                        for reply in core.on_message(raw, &inbound) {
                            stream.write_all(&reply.bytes).await?;
                        }
                    }
                    Ok(Some(Frame::Ping)) => {
                        metrics.keepalive_pongs.increment(1);
                        stream.write_all(b"\r\n").await?;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        metrics.parse_error(error);
                        metrics.tcp_closed_malformed.increment(1);
                        tracing::debug!(peer.addr = %peer, error = %error, "closing tcp connection: stream cannot be framed");
                        return Ok(());
                    }
                }
            }
            let buffer = framer.buffer_mut();
            buffer.reserve(4096);
            match tokio::time::timeout(config.idle_timeout, stream.read_buf(buffer)).await {
                Err(_) => {
                    tracing::debug!(peer.addr = %peer, "closing idle tcp connection");
                    return Ok(());
                }
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        tracing::debug!(peer.addr = %peer, error = %e, "tcp connection error");
    }
    metrics.tcp_open.decrement(1.0);
}
