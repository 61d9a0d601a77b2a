//! TCP listeners: accept within a connection limit, frame each stream with
//! [`StreamFramer`], answer on the same connection. A stream that cannot be framed closes
//! that connection only; an idle connection is closed after the configured time. The
//! connections belong to their listener's task: when it stops, they close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::dispatch::{Dispatcher, Outgoing};
use crate::acl::rules::Proto;
use crate::proxy::{ConnId, Inbound, Send, Sends, Side};
use crate::sip::{Frame, StreamFramer};

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
/// (they live in its `JoinSet`), so a stopped edge answers nothing more. `side` says whether
/// this is a customer listener or an egress address.
pub async fn serve(listener: TcpListener, side: Side, dispatcher: Arc<Dispatcher>) {
    let config = dispatcher.tcp.clone();
    let metrics = dispatcher.metrics.clone();
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
        let (id, rx) = dispatcher.register(peer);
        let dispatcher = dispatcher.clone();
        connections.spawn(async move {
            connection(stream, peer, side, id, rx, dispatcher).await;
            drop(permit);
        });
    }
}

/// Serves one connection, accepted or opened: frames what arrives and hands it to the core,
/// and writes what the dispatcher queues for it. Closes on EOF, error, an unframeable stream
/// or the idle timeout.
pub(crate) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    side: Side,
    id: ConnId,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    dispatcher: Arc<Dispatcher>,
) {
    let metrics = dispatcher.metrics.clone();
    metrics.tcp_open.increment(1.0);
    let Ok(local) = stream.local_addr() else {
        metrics.tcp_open.decrement(1.0);
        dispatcher.unregister(id);
        return;
    };
    let inbound = Inbound {
        source: peer,
        local,
        transport: Proto::Tcp,
        side,
        conn: Some(id),
    };
    let idle = dispatcher.tcp.idle_timeout;
    let (mut reader, mut writer) = stream.into_split();
    let writer_task = tokio::spawn(async move {
        while let Some((bytes, _)) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let core = dispatcher.core.clone();
    let mut framer = StreamFramer::new(*core.limits());
    let outcome: std::io::Result<()> = async {
        loop {
            loop {
                match framer.next_frame() {
                    Ok(Some(Frame::Message(raw))) => {
                        let sends = core.on_message(Instant::now(), raw, &inbound);
                        dispatcher.dispatch(sends).await;
                    }
                    Ok(Some(Frame::Ping)) => {
                        metrics.keepalive_pongs.increment(1);
                        dispatcher.dispatch(pong(&inbound)).await;
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
            match tokio::time::timeout(idle, reader.read_buf(buffer)).await {
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
    dispatcher.unregister(id);
    // Let queued replies (a 400 before closing) go out, then close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer_task).await;
    metrics.tcp_open.decrement(1.0);
}

/// The CRLF answer to a double-CRLF ping (RFC 5626), on the same connection.
fn pong(inbound: &Inbound) -> Sends {
    let mut sends = Sends::new();
    sends.push(Send {
        face: inbound.face(),
        to: inbound.source,
        transport: Proto::Tcp,
        bytes: Bytes::from_static(b"\r\n"),
        branch: None,
    });
    sends
}
