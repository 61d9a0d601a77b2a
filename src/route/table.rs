//! Gateways and routes as the trunks file lists them, and the live table the proxy reads:
//! each gateway's resolved addresses (refreshed by the DNS task) and its health (moved by
//! probes and by connect failures on real calls).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use super::{Health, HealthPolicy, HealthState};
use crate::acl::rules::Proto;

/// A vendor gateway as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySpec {
    pub name: String,
    /// An IP literal or a DNS name (A/AAAA).
    pub host: String,
    pub port: u16,
    /// `Udp` or `Tcp`.
    pub transport: Proto,
    pub weight: u32,
    pub priority: u32,
    /// Digits removed from the front of the Request-URI user part...
    pub strip: usize,
    /// ...and then this prepended.
    pub prefix: String,
    pub probe: bool,
}

/// A named, ordered list of gateways a trunk group sends its calls to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    pub gateways: Vec<String>,
    pub max_attempts: Option<usize>,
}

/// Gateways and routes from the trunks file, references checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    pub gateways: Vec<GatewaySpec>,
    pub routes: Vec<RouteSpec>,
}

/// One gateway at run time.
#[derive(Debug)]
pub struct Gateway {
    pub spec: GatewaySpec,
    /// Current addresses: fixed for an IP literal, refreshed for a DNS name. Empty until the
    /// first successful lookup (the gateway is then skipped).
    addresses: RwLock<Vec<IpAddr>>,
    health: Mutex<Health>,
}

impl Gateway {
    fn new(spec: GatewaySpec) -> Gateway {
        let addresses = spec
            .host
            .parse::<IpAddr>()
            .map(|ip| vec![ip])
            .unwrap_or_default();
        Gateway {
            spec,
            addresses: RwLock::new(addresses),
            health: Mutex::new(Health::default()),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Whether the host needs DNS.
    pub fn needs_resolution(&self) -> bool {
        self.spec.host.parse::<IpAddr>().is_err()
    }

    /// Where to send: the first resolved address at the configured port.
    pub fn address(&self) -> Option<SocketAddr> {
        let addresses = self.addresses.read().unwrap_or_else(|e| e.into_inner());
        addresses
            .first()
            .map(|&ip| SocketAddr::new(ip, self.spec.port))
    }

    pub fn set_addresses(&self, resolved: Vec<IpAddr>) {
        *self.addresses.write().unwrap_or_else(|e| e.into_inner()) = resolved;
    }

    pub fn is_up(&self) -> bool {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_up()
    }

    /// A probe answered: returns the new state when it changed.
    pub fn probe_answered(&self, code: u16, policy: &HealthPolicy) -> Option<HealthState> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .probe_answered(code, policy)
    }

    /// A probe timed out or a connection failed.
    pub fn failed(&self, policy: &HealthPolicy) -> Option<HealthState> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed(policy)
    }
}

/// A route: indices into the table's gateways.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub gateways: Vec<usize>,
    pub max_attempts: Option<usize>,
}

/// The live routing table.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub gateways: Vec<Arc<Gateway>>,
    routes: HashMap<String, Route>,
}

impl RouteTable {
    pub fn new(routing: &Routing) -> RouteTable {
        let gateways: Vec<Arc<Gateway>> = routing
            .gateways
            .iter()
            .cloned()
            .map(|spec| Arc::new(Gateway::new(spec)))
            .collect();
        let index: HashMap<&str, usize> = gateways
            .iter()
            .enumerate()
            .map(|(i, g)| (g.spec.name.as_str(), i))
            .collect();
        let routes = routing
            .routes
            .iter()
            .map(|r| {
                let members = r
                    .gateways
                    .iter()
                    .filter_map(|name| index.get(name.as_str()).copied())
                    .collect();
                (
                    r.name.clone(),
                    Route {
                        name: r.name.clone(),
                        gateways: members,
                        max_attempts: r.max_attempts,
                    },
                )
            })
            .collect();
        RouteTable { gateways, routes }
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.get(name)
    }

    pub fn gateway(&self, index: usize) -> Option<&Arc<Gateway>> {
        self.gateways.get(index)
    }
}

/// The Request-URI user part after a gateway's strip and prefix.
pub fn rewrite_user(user: &[u8], strip: usize, prefix: &str) -> Vec<u8> {
    let kept = user.get(strip.min(user.len())..).unwrap_or_default();
    let mut out = Vec::with_capacity(prefix.len() + kept.len());
    out.extend_from_slice(prefix.as_bytes());
    out.extend_from_slice(kept);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, host: &str) -> GatewaySpec {
        GatewaySpec {
            name: name.to_owned(),
            host: host.to_owned(),
            port: 5080,
            transport: Proto::Udp,
            weight: 1,
            priority: 0,
            strip: 0,
            prefix: String::new(),
            probe: false,
        }
    }

    #[test]
    fn routes_resolve_gateway_names_and_ip_hosts_need_no_dns() {
        let table = RouteTable::new(&Routing {
            gateways: vec![spec("a", "192.0.2.1"), spec("b", "vendor.example")],
            routes: vec![RouteSpec {
                name: "r".to_owned(),
                gateways: vec!["b".to_owned(), "a".to_owned()],
                max_attempts: None,
            }],
        });
        assert_eq!(table.route("r").unwrap().gateways, vec![1, 0]);
        assert_eq!(
            table.gateways[0].address(),
            Some("192.0.2.1:5080".parse().unwrap())
        );
        assert!(table.gateways[1].needs_resolution());
        assert_eq!(table.gateways[1].address(), None);
        table.gateways[1].set_addresses(vec!["198.51.100.7".parse().unwrap()]);
        assert_eq!(
            table.gateways[1].address(),
            Some("198.51.100.7:5080".parse().unwrap())
        );
    }

    #[test]
    fn strip_then_prefix() {
        assert_eq!(rewrite_user(b"0012025550100", 2, ""), b"12025550100");
        assert_eq!(rewrite_user(b"2025550100", 0, "+1"), b"+12025550100");
        assert_eq!(rewrite_user(b"12", 5, "9"), b"9");
    }
}
