//! The egress pool: the static addresses vendors whitelist. Each address gets a UDP socket
//! (vendor-bound requests leave from it; responses and the vendor's in-dialog requests come
//! back to it) and a TCP listener on the same port (vendors open connections back to the
//! address in the edge's Record-Route). Which address a call uses is the core's choice (a
//! stable hash of the Call-ID); this module only binds.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};

use super::{tcp, udp};
use crate::config::UdpConfig;

/// The bound pool.
pub struct EgressPool {
    pub udp: Vec<Arc<UdpSocket>>,
    pub tcp: Vec<TcpListener>,
    /// Bound addresses (port 0 resolved), in configured order.
    pub addresses: Vec<SocketAddr>,
}

/// Binds every egress address. With port 0 the UDP socket picks the port and the TCP
/// listener takes the same one (retrying a few times if TCP has it taken).
pub fn bind(
    addresses: &[SocketAddr],
    config: &UdpConfig,
) -> Result<EgressPool, (SocketAddr, io::Error)> {
    let single = UdpConfig {
        sockets_per_listener: 1,
        ..config.clone()
    };
    let mut pool = EgressPool {
        udp: Vec::new(),
        tcp: Vec::new(),
        addresses: Vec::new(),
    };
    for &address in addresses {
        let mut attempts = 0;
        let (socket, listener, bound) = loop {
            let socket = udp::bind(address, &single).map_err(|e| (address, e))?;
            let bound = socket.local_addr().map_err(|e| (address, e))?;
            match tcp::bind(bound) {
                Ok(listener) => break (socket, listener, bound),
                Err(e) if address.port() == 0 && attempts < 8 => {
                    attempts += 1;
                    tracing::debug!(error = %e, "egress port taken over TCP; trying another");
                }
                Err(e) => return Err((bound, e)),
            }
        };
        pool.udp.push(Arc::new(socket));
        pool.tcp.push(listener);
        pool.addresses.push(bound);
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_udp_and_tcp_on_one_port_per_address() {
        let config = UdpConfig {
            receive_buffer_bytes: 64 * 1024,
            sockets_per_listener: 1,
            receivers_per_socket: 1,
        };
        let wanted: Vec<SocketAddr> = vec![
            "127.0.1.1:0".parse().unwrap(),
            "127.0.1.2:0".parse().unwrap(),
        ];
        let pool = bind(&wanted, &config).expect("binds");
        for (i, address) in pool.addresses.iter().enumerate() {
            assert_eq!(address.ip(), wanted[i].ip());
            assert_ne!(address.port(), 0);
            assert_eq!(pool.tcp[i].local_addr().unwrap(), *address);
            assert_eq!(pool.udp[i].local_addr().unwrap(), *address);
        }
    }
}
