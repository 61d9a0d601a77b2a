//! UDP listeners. A socket bound to one IP knows its local address; a wildcard socket
//! (`0.0.0.0`, `::`) learns each datagram's destination IP from `IP_PKTINFO` and answers from
//! that same IP, because dedicated-IP customers are recognised by the address they dialled.
//!
//! quinn-udp was considered (batched I/O, destination IPs) and rejected: it forbids IPv4
//! fragmentation on its sockets, and SIP over UDP must let a large INVITE fragment rather
//! than fail with EMSGSIZE.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::dispatch::Dispatcher;
use crate::acl::rules::Proto;
use crate::config::UdpConfig;
use crate::proxy::{Inbound, Side};

/// Largest datagram read (the IPv4 UDP payload limit).
const MAX_DATAGRAM: usize = 65_535;

/// Binds one UDP socket with a large receive buffer; `SO_REUSEPORT` when several sockets
/// share the address so the kernel spreads senders across them. A port another socket
/// holds is refused (`AddrInUse`), and port 0 picks a free one.
pub fn bind(address: SocketAddr, config: &UdpConfig) -> io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // No SO_REUSEADDR: UDP has no TIME_WAIT to skip, and on Linux it would let a second
    // process (a stray second edge) bind the same port and silently take its traffic.
    if config.sockets_per_listener > 1 {
        socket.set_reuse_port(true)?;
    }
    if address.is_ipv6() {
        socket.set_only_v6(false).ok();
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    socket
        .set_recv_buffer_size(config.receive_buffer_bytes)
        .ok();
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    let socket = UdpSocket::from_std(socket.into())?;
    if address.ip().is_unspecified() {
        match address {
            SocketAddr::V4(_) => {
                socket::setsockopt(&socket, socket::sockopt::Ipv4PacketInfo, &true)?
            }
            SocketAddr::V6(_) => {
                socket::setsockopt(&socket, socket::sockopt::Ipv6RecvPacketInfo, &true)?
            }
        }
    }
    Ok(socket)
}

/// Receives datagrams on `socket`, hands them to the core and dispatches what it returns,
/// until the task is dropped. `side` says whether this is a listener or an egress address.
pub async fn serve(socket: Arc<UdpSocket>, side: Side, dispatcher: Arc<Dispatcher>) {
    let Ok(bound) = socket.local_addr() else {
        return;
    };
    let wildcard = bound.ip().is_unspecified();
    let core = dispatcher.core.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = if wildcard {
            recv_with_destination(&socket, &mut buf).await
        } else {
            socket
                .recv_from(&mut buf)
                .await
                .map(|(n, source)| (n, source, bound.ip()))
        };
        let (len, source, local_ip) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here as ECONNREFUSED and the like; the socket lives on.
                tracing::trace!(error = %e, "udp receive error");
                continue;
            }
        };
        let inbound = Inbound {
            source,
            local: SocketAddr::new(local_ip, bound.port()),
            transport: Proto::Udp,
            side,
            conn: None,
        };
        let sends = core.on_datagram(
            Instant::now(),
            Bytes::copy_from_slice(&buf[..len]),
            &inbound,
        );
        if !sends.is_empty() {
            dispatcher.dispatch(sends).await;
        }
    }
}

fn to_socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

/// `recvmsg` with `IP_PKTINFO`/`IPV6_PKTINFO`: the datagram, its source, and the local IP it
/// was sent to.
async fn recv_with_destination(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, IpAddr)> {
    let fallback = socket.local_addr()?.ip();
    socket
        .async_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(buf)];
            let mut space = nix::cmsg_space!(libc::in6_pktinfo);
            let msg = socket::recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )?;
            let source = msg
                .address
                .as_ref()
                .and_then(to_socket_addr)
                .ok_or_else(|| io::Error::other("no source address"))?;
            let mut local = fallback;
            for cmsg in msg.cmsgs()? {
                match cmsg {
                    ControlMessageOwned::Ipv4PacketInfo(info) => {
                        local = IpAddr::from(u32::from_be(info.ipi_addr.s_addr).to_be_bytes());
                    }
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        local = IpAddr::from(info.ipi6_addr.s6_addr)
                    }
                    _ => {}
                }
            }
            Ok((msg.bytes, source, local))
        })
        .await
}

/// `sendmsg` with the source IP set, so that a wildcard socket answers from the address the
/// request was sent to.
pub(crate) async fn send_from(
    socket: &UdpSocket,
    bytes: &[u8],
    to: SocketAddr,
    from: IpAddr,
) -> io::Result<()> {
    let destination = SockaddrStorage::from(to);
    let iov = [IoSlice::new(bytes)];
    socket
        .async_io(Interest::WRITABLE, || {
            let fd = socket.as_raw_fd();
            match from {
                IpAddr::V4(ip) => {
                    let info = libc::in_pktinfo {
                        ipi_ifindex: 0,
                        ipi_spec_dst: libc::in_addr {
                            s_addr: u32::from(ip).to_be(),
                        },
                        ipi_addr: libc::in_addr { s_addr: 0 },
                    };
                    socket::sendmsg(
                        fd,
                        &iov,
                        &[ControlMessage::Ipv4PacketInfo(&info)],
                        MsgFlags::empty(),
                        Some(&destination),
                    )
                }
                IpAddr::V6(ip) => {
                    let info = libc::in6_pktinfo {
                        ipi6_addr: libc::in6_addr {
                            s6_addr: ip.octets(),
                        },
                        ipi6_ifindex: 0,
                    };
                    socket::sendmsg(
                        fd,
                        &iov,
                        &[ControlMessage::Ipv6PacketInfo(&info)],
                        MsgFlags::empty(),
                        Some(&destination),
                    )
                }
            }
            .map(drop)
            .map_err(io::Error::from)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(sockets_per_listener: usize) -> UdpConfig {
        UdpConfig {
            receive_buffer_bytes: 64 * 1024,
            sockets_per_listener,
            receivers_per_socket: 1,
        }
    }

    #[tokio::test]
    async fn port_zero_picks_a_port_no_other_listener_can_share() {
        let first = bind(SocketAddr::from(([127, 0, 0, 1], 0)), &config(1)).unwrap();
        let taken = first.local_addr().unwrap();
        // A second listener configured with that port must not share it.
        let second = bind(taken, &config(1));
        assert_eq!(
            second.err().map(|e| e.kind()),
            Some(io::ErrorKind::AddrInUse)
        );
    }

    #[tokio::test]
    async fn sockets_of_one_listener_share_the_port_picked_for_the_first() {
        let first = bind(SocketAddr::from(([127, 0, 0, 1], 0)), &config(2)).unwrap();
        let taken = first.local_addr().unwrap();
        let second = bind(taken, &config(2)).unwrap();
        assert_eq!(second.local_addr().unwrap(), taken);
    }
}
