//! Assembly: binds the listeners and the admin endpoint, loads the first snapshot, and runs
//! the tasks that serve them. [`start`] returns a handle with the bound addresses, so tests
//! can run an edge on port 0 in-process; [`run`] is what `warp-edge run` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::acl::rules::Proto;
use crate::acl::{Acl, AclError, Snapshot};
use crate::config::{Config, ListenerTransport, TrunksFile};
use crate::proxy::{Core, CoreSettings, ForwardSettings, Forwarder, ListenerFace, Side};
use crate::route::RouteTable;
use crate::telemetry::{serve_admin, Metrics};
use crate::transport::{egress, run_timers, tcp, udp, Dispatcher};

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
    /// Bound egress addresses (UDP, and TCP on the same port); empty without `[proxy]`.
    pub egress: Vec<SocketAddr>,
    pub admin: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub acl: Arc<Acl>,
    pub core: Arc<Core>,
    dispatcher: Arc<Dispatcher>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Edge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.dispatcher.shutdown();
    }
}

impl Edge {
    /// SIGTERM behaviour: new INVITEs get 503 with Retry-After, `/readyz` turns 503, and
    /// everything in flight keeps being served. Resolves when `drain` has passed, or earlier
    /// once no transaction has been waiting for a final response for a second.
    pub async fn drain(&self, drain: Duration) {
        self.metrics.set_ready(false);
        let Some(forwarder) = self.core.forwarder() else {
            return;
        };
        forwarder.start_drain();
        let deadline = tokio::time::Instant::now() + drain;
        let mut idle_since: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::info!(
                    pending = forwarder.pending_transactions(),
                    "drain time over"
                );
                return;
            }
            if forwarder.pending_transactions() == 0 {
                let since = *idle_since.get_or_insert(now);
                if now - since >= Duration::from_secs(1) {
                    tracing::info!("drained: no transaction in progress");
                    return;
                }
            } else {
                idle_since = None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The snapshot the config's trunks file builds, with a failure named after that file.
pub fn build_snapshot(config: &Config, trunks: &TrunksFile) -> Result<Snapshot, StartError> {
    Snapshot::build(trunks.rules.clone(), config.acl.group).map_err(|source| StartError::Acl {
        file: config.acl.trunks_file.display().to_string(),
        source: Box::new(source),
    })
}

/// How often protocol timers are checked (retransmissions, timeouts, probes).
const TIMER_TICK: Duration = Duration::from_millis(10);

/// Binds everything and starts serving. Must be called inside a tokio runtime.
pub async fn start(config: &Config, trunks: TrunksFile) -> Result<Edge, StartError> {
    let metrics = Metrics::new();
    let snapshot = build_snapshot(config, &trunks)?;
    let acl = Arc::new(Acl::new(Snapshot::empty()));
    // Gateways and routes are read once, at start-up; the ACL follows its sources.
    let routing = trunks.routing.clone();
    // The first snapshot, and the tasks that keep it current (trunks file, PostgreSQL, Redis).
    let acl_tasks = crate::acl::sources::start(config, trunks, snapshot, &acl, &metrics).await;

    let settings = CoreSettings {
        limits: config.limits,
        deny_action: config.acl.deny_action,
        deny_reason_in_reply: config.acl.deny_reason_in_reply,
        retry_after_secs: config.retry_after_secs,
    };
    let mut tasks = Vec::new();

    let admin = tcp::bind(config.admin).map_err(|source| StartError::Bind {
        what: "admin",
        address: config.admin,
        source,
    })?;
    let admin_addr = admin.local_addr().unwrap_or(config.admin);
    tasks.push(tokio::spawn(serve_admin(admin, metrics.clone())));

    // Bind every socket first: the forwarder needs the bound addresses.
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    let mut faces = Vec::new();
    for listener in &config.listeners {
        let address = listener.address;
        match listener.transport {
            ListenerTransport::Udp => {
                // The first socket fixes the port (port 0 picks one); the others share it.
                let mut bound = address;
                let mut sockets = Vec::new();
                for _ in 0..config.udp.sockets_per_listener {
                    let socket =
                        udp::bind(bound, &config.udp).map_err(|source| StartError::Bind {
                            what: "udp",
                            address: bound,
                            source,
                        })?;
                    bound = socket.local_addr().unwrap_or(bound);
                    sockets.push(Arc::new(socket));
                }
                faces.push(ListenerFace {
                    transport: Proto::Udp,
                    bound,
                    advertise: listener.advertise.clone(),
                });
                udp_sockets.push(sockets);
            }
            ListenerTransport::Tcp => {
                let socket = tcp::bind(address).map_err(|source| StartError::Bind {
                    what: "tcp",
                    address,
                    source,
                })?;
                let bound = socket.local_addr().unwrap_or(address);
                faces.push(ListenerFace {
                    transport: Proto::Tcp,
                    bound,
                    advertise: listener.advertise.clone(),
                });
                tcp_listeners.push(socket);
            }
        }
    }
    let pool = match &config.proxy {
        Some(proxy) => Some(egress::bind(&proxy.egress, &config.udp).map_err(
            |(address, source)| StartError::Bind {
                what: "egress",
                address,
                source,
            },
        )?),
        None => None,
    };
    let forwarder = match (&config.proxy, &pool) {
        (Some(proxy), Some(pool)) => {
            let routes = Arc::new(RouteTable::new(&routing));
            resolve_gateways(&routes).await;
            tasks.push(tokio::spawn(refresh_dns(routes.clone(), proxy.dns_refresh)));
            let settings = ForwardSettings {
                listeners: faces.clone(),
                egress: pool.addresses.clone(),
                keys: proxy.keys.clone(),
                max_transactions: proxy.max_transactions,
                max_attempts: proxy.max_attempts,
                failover_codes: proxy.failover_codes.clone(),
                default_route: proxy.default_route.clone(),
                timers: proxy.timers,
                probe: proxy.probe.clone(),
                retry_after_secs: config.retry_after_secs,
            };
            Some(Forwarder::new(settings, routes, metrics.clone()))
        }
        _ => None,
    };
    let core = Arc::new(Core::new(settings, acl.clone(), metrics.clone(), forwarder));
    let listener_sockets: Vec<Arc<tokio::net::UdpSocket>> = udp_sockets
        .iter()
        .filter_map(|s| s.first().cloned())
        .collect();
    let (egress_udp, egress_tcp, egress_addrs) = match pool {
        Some(pool) => (pool.udp, pool.tcp, pool.addresses),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let dispatcher = Arc::new(Dispatcher::new(
        core.clone(),
        metrics.clone(),
        config.tcp.clone(),
        listener_sockets,
        egress_udp.clone(),
        egress_addrs.clone(),
    ));

    let (mut udp_addrs, mut tcp_addrs) = (Vec::new(), Vec::new());
    for sockets in udp_sockets {
        if let Some(first) = sockets.first().and_then(|s| s.local_addr().ok()) {
            udp_addrs.push(first);
        }
        for socket in sockets {
            for _ in 0..config.udp.receivers_per_socket {
                tasks.push(tokio::spawn(udp::serve(
                    socket.clone(),
                    Side::Listener,
                    dispatcher.clone(),
                )));
            }
        }
    }
    for listener in tcp_listeners {
        if let Ok(address) = listener.local_addr() {
            tcp_addrs.push(address);
        }
        tasks.push(tokio::spawn(tcp::serve(
            listener,
            Side::Listener,
            dispatcher.clone(),
        )));
    }
    for (i, (socket, listener)) in egress_udp.into_iter().zip(egress_tcp).enumerate() {
        for _ in 0..config.udp.receivers_per_socket {
            tasks.push(tokio::spawn(udp::serve(
                socket.clone(),
                Side::Egress(i),
                dispatcher.clone(),
            )));
        }
        tasks.push(tokio::spawn(tcp::serve(
            listener,
            Side::Egress(i),
            dispatcher.clone(),
        )));
    }
    if core.forwarder().is_some() {
        tasks.push(tokio::spawn(run_timers(dispatcher.clone(), TIMER_TICK)));
    }
    tasks.extend(acl_tasks);
    metrics.set_ready(true);
    tracing::info!(udp = ?udp_addrs, tcp = ?tcp_addrs, egress = ?egress_addrs, admin = %admin_addr, "warp-edge started");
    Ok(Edge {
        udp: udp_addrs,
        tcp: tcp_addrs,
        egress: egress_addrs,
        admin: admin_addr,
        metrics,
        acl,
        core,
        dispatcher,
        tasks,
    })
}

/// Resolves gateways given by DNS name (A/AAAA) once, before the first call.
async fn resolve_gateways(routes: &RouteTable) {
    for gateway in routes.gateways.iter().filter(|g| g.needs_resolution()) {
        let lookup = tokio::net::lookup_host((gateway.spec.host.as_str(), gateway.spec.port));
        match tokio::time::timeout(Duration::from_secs(5), lookup).await {
            Ok(Ok(addresses)) => {
                // IPv4 first: the egress pool and most vendors are IPv4.
                let mut ips: Vec<_> = addresses.map(|a| a.ip()).collect();
                ips.sort_by_key(|ip| ip.is_ipv6());
                ips.dedup();
                tracing::info!(gateway.name = gateway.name(), addresses = ?ips, "gateway resolved");
                gateway.set_addresses(ips);
            }
            Ok(Err(e)) => {
                tracing::warn!(gateway.name = gateway.name(), error = %e, "gateway does not resolve; skipped until it does")
            }
            Err(_) => tracing::warn!(gateway.name = gateway.name(), "gateway lookup timed out"),
        }
    }
}

/// Re-resolves DNS-named gateways every `period`; a failed lookup keeps the last addresses.
async fn refresh_dns(routes: Arc<RouteTable>, period: Duration) {
    if !routes.gateways.iter().any(|g| g.needs_resolution()) {
        return;
    }
    loop {
        tokio::time::sleep(period).await;
        resolve_gateways(&routes).await;
    }
}

/// Runs until SIGTERM or Ctrl-C, then drains (see [`Edge::drain`]) and returns.
pub async fn run(config: &Config, trunks: TrunksFile) -> Result<(), StartError> {
    let edge = start(config, trunks).await?;
    shutdown_signal().await;
    let drain = config.proxy.as_ref().map_or(Duration::ZERO, |p| p.drain);
    tracing::info!(drain_secs = drain.as_secs(), "warp-edge stopping: draining");
    edge.drain(drain).await;
    tracing::info!("warp-edge stopped");
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
