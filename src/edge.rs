//! Assembly: binds the listeners and the admin endpoint, loads the first snapshot, and runs
//! the tasks that serve them. [`start`] returns a handle with the bound addresses, so tests
//! can run an edge on port 0 in-process; [`run`] is what `warp-edge run` does.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::acl::{Acl, AclError, Snapshot};
use crate::config::{Config, ListenerTransport, TrunksFile};
use crate::proxy::{Core, CoreSettings};
use crate::telemetry::{serve_admin, Metrics};
use crate::transport::{tcp, udp};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{file}: {source}")]
    Acl { file: String, source: Box<AclError> },
    #[error("cannot bind {what} {address}: {source}")]
    Bind {
        what: &'static str,
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A running edge. Dropping it stops every task.
pub struct Edge {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub acl: Arc<Acl>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The snapshot the config's trunks file builds, with a failure named after that file.
pub fn build_snapshot(config: &Config, trunks: &TrunksFile) -> Result<Snapshot, StartError> {
    Snapshot::build(&trunks.rules, config.acl.group).map_err(|source| StartError::Acl {
        file: config.acl.trunks_file.display().to_string(),
        source: Box::new(source),
    })
}

/// Binds everything and starts serving. Must be called inside a tokio runtime.
pub async fn start(config: &Config, trunks: TrunksFile) -> Result<Edge, StartError> {
    let metrics = Metrics::new();
    let snapshot = build_snapshot(config, &trunks)?;
    let acl = Arc::new(Acl::new(Snapshot::empty()));
    // The first snapshot, and the tasks that keep it current (trunks file, PostgreSQL, Redis).
    let acl_tasks = crate::acl::sources::start(config, trunks, snapshot, &acl, &metrics).await;

    let settings = CoreSettings {
        limits: config.limits,
        deny_action: config.acl.deny_action,
        deny_reason_in_reply: config.acl.deny_reason_in_reply,
        retry_after_secs: config.retry_after_secs,
    };
    let core = Arc::new(Core::new(settings, acl.clone(), metrics.clone()));
    let mut tasks = Vec::new();
    let (mut udp_addrs, mut tcp_addrs) = (Vec::new(), Vec::new());

    let admin = tcp::bind(config.admin).map_err(|source| StartError::Bind {
        what: "admin",
        address: config.admin,
        source,
    })?;
    let admin_addr = admin.local_addr().unwrap_or(config.admin);
    tasks.push(tokio::spawn(serve_admin(admin, metrics.clone())));

    for listener in &config.listeners {
        let address = listener.address;
        match listener.transport {
            ListenerTransport::Udp => {
                // The first socket fixes the port (port 0 picks one); the others share it.
                let mut bound = address;
                for _ in 0..config.udp.sockets_per_listener {
                    let socket =
                        udp::bind(bound, &config.udp).map_err(|source| StartError::Bind {
                            what: "udp",
                            address: bound,
                            source,
                        })?;
                    bound = socket.local_addr().unwrap_or(bound);
                    tasks.push(tokio::spawn(udp::serve(socket, core.clone())));
                }
                udp_addrs.push(bound);
            }
            ListenerTransport::Tcp => {
                let socket = tcp::bind(address).map_err(|source| StartError::Bind {
                    what: "tcp",
                    address,
                    source,
                })?;
                tcp_addrs.push(socket.local_addr().unwrap_or(address));
                tasks.push(tokio::spawn(tcp::serve(
                    socket,
                    core.clone(),
                    metrics.clone(),
                    config.tcp.clone(),
                )));
            }
        }
    }
    tasks.extend(acl_tasks);
    metrics.set_ready(true);
    tracing::info!(udp = ?udp_addrs, tcp = ?tcp_addrs, admin = %admin_addr, "warp-edge started");
    Ok(Edge {
        udp: udp_addrs,
        tcp: tcp_addrs,
        admin: admin_addr,
        metrics,
        acl,
        tasks,
    })
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(config: &Config, trunks: TrunksFile) -> Result<(), StartError> {
    let edge = start(config, trunks).await?;
    shutdown_signal().await;
    edge.metrics.set_ready(false);
    tracing::info!("warp-edge stopping");
    drop(edge);
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
