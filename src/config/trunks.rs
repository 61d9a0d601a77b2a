//! The trunks file: the embedded default ACL source. Customers, trunk groups, trunk IPs and
//! dedicated ingress IPs, validated into a [`RuleSet`] with every reference checked.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Deserialize;

use super::{parse_toml, read, ConfigError, Parsed};
use crate::acl::rules::{
    AclEntry, AuthType, Customer, CustomerStatus, DedicatedIp, Proto, RuleSet, TrunkGroup,
};
use crate::route::{GatewaySpec, RouteSpec, Routing};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomerFile {
    ban: String,
    name: String,
    #[serde(default)]
    status: CustomerStatus,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkGroupFile {
    id: i64,
    ban: String,
    name: String,
    #[serde(default)]
    auth_type: AuthType,
    max_cps: Option<u32>,
    max_concurrent_calls: Option<u32>,
    route: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunkIpFile {
    trunk_group: i64,
    /// A host (`192.0.2.10`) or a network (`192.0.2.0/28`).
    cidr: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    proto: Proto,
    #[serde(default = "one")]
    group: u32,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    description: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DedicatedIpFile {
    ip: Parsed<IpAddr>,
    ban: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    description: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GatewayFile {
    name: String,
    host: String,
    #[serde(default = "sip_port")]
    port: u16,
    #[serde(default = "udp")]
    transport: Proto,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    strip: usize,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    probe: bool,
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: String,
    gateways: Vec<String>,
    max_attempts: Option<usize>,
}

fn sip_port() -> u16 {
    5060
}
fn udp() -> Proto {
    Proto::Udp
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrunksFileRaw {
    #[serde(default)]
    customers: Vec<CustomerFile>,
    #[serde(default)]
    trunk_groups: Vec<TrunkGroupFile>,
    #[serde(default)]
    trunk_ips: Vec<TrunkIpFile>,
    #[serde(default)]
    dedicated_ips: Vec<DedicatedIpFile>,
    #[serde(default)]
    gateways: Vec<GatewayFile>,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

/// A validated trunks file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunksFile {
    /// Shared: the snapshot built from them keeps them for `acl explain`.
    pub rules: Arc<RuleSet>,
    /// Vendor gateways and the routes over them.
    pub routing: Routing,
    /// Trunk IP rows present but disabled (not in `rules`).
    pub disabled_entries: usize,
}

/// Parses `host` or `network/len` into a network, refusing host bits set below the mask.
/// IPv4-mapped IPv6 is stored as IPv4.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("invalid value {text:?}: not an IP address or CIDR network"))?,
    };
    if net.trunc() != net {
        return Err(format!(
            "invalid value {text:?}: host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(match net {
        IpNet::V6(v6) => match (v6.addr().to_ipv4_mapped(), v6.prefix_len()) {
            (Some(v4), len) if len >= 96 => IpNet::new(IpAddr::V4(v4), len - 96).unwrap_or(net),
            _ => net,
        },
        IpNet::V4(_) => net,
    })
}

pub fn load_trunks(file: &Path) -> Result<TrunksFile, ConfigError> {
    let text = read(file)?;
    parse_trunks(file, &text)
}

pub fn parse_trunks(file: &Path, text: &str) -> Result<TrunksFile, ConfigError> {
    let raw: TrunksFileRaw = parse_toml(file, text)?;
    let invalid = |key: String, message: String| ConfigError::Invalid {
        file: file.to_owned(),
        key,
        message,
    };
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut rules = RuleSet::default();

    let mut bans = HashSet::new();
    for (i, c) in raw.customers.into_iter().enumerate() {
        if c.ban.trim().is_empty() {
            return Err(invalid(
                format!("customers[{i}].ban"),
                "invalid value \"\": empty BAN".to_owned(),
            ));
        }
        if !bans.insert(c.ban.clone()) {
            return Err(invalid(
                format!("customers[{i}].ban"),
                format!("invalid value {:?}: duplicate BAN", c.ban),
            ));
        }
        rules.customers.push(Customer {
            ban: c.ban,
            name: c.name,
            status: c.status,
        });
    }

    let mut groups = HashMap::new();
    for (i, t) in raw.trunk_groups.into_iter().enumerate() {
        if !bans.contains(&t.ban) {
            return Err(invalid(
                format!("trunk_groups[{i}].ban"),
                format!("invalid value {:?}: no such customer", t.ban),
            ));
        }
        if groups.insert(t.id, t.ban.clone()).is_some() {
            return Err(invalid(
                format!("trunk_groups[{i}].id"),
                format!("invalid value {}: duplicate trunk group id", t.id),
            ));
        }
        rules.trunk_groups.push(TrunkGroup {
            id: t.id,
            ban: t.ban,
            name: t.name,
            auth_type: t.auth_type,
            max_cps: t.max_cps,
            max_concurrent_calls: t.max_concurrent_calls,
            route: t.route,
            enabled: t.enabled,
        });
    }

    let mut disabled_entries = 0;
    for (i, ip) in raw.trunk_ips.into_iter().enumerate() {
        let Some(ban) = groups.get(&ip.trunk_group) else {
            return Err(invalid(
                format!("trunk_ips[{i}].trunk_group"),
                format!("invalid value {}: no such trunk group", ip.trunk_group),
            ));
        };
        let network =
            parse_cidr(&ip.cidr).map_err(|m| invalid(format!("trunk_ips[{i}].cidr"), m))?;
        if ip.group == 0 {
            return Err(invalid(
                format!("trunk_ips[{i}].group"),
                "invalid value 0: groups start at 1".to_owned(),
            ));
        }
        if !ip.enabled {
            disabled_entries += 1;
            continue;
        }
        let described = if ip.description.is_empty() {
            String::new()
        } else {
            format!(" ({})", ip.description)
        };
        rules.entries.push(AclEntry {
            origin: format!("{name} trunk_ips[{i}]{described}").into(),
            group: ip.group,
            network,
            port: ip.port,
            proto: ip.proto,
            ban: ban.as_str().into(),
            trunk_group: Some(ip.trunk_group),
        });
    }

    let mut dedicated = HashSet::new();
    for (i, d) in raw.dedicated_ips.into_iter().enumerate() {
        if !bans.contains(&d.ban) {
            return Err(invalid(
                format!("dedicated_ips[{i}].ban"),
                format!("invalid value {:?}: no such customer", d.ban),
            ));
        }
        let ip = match d.ip.0 {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if !dedicated.insert(ip) {
            return Err(invalid(
                format!("dedicated_ips[{i}].ip"),
                format!("invalid value \"{ip}\": listed twice"),
            ));
        }
        if d.enabled {
            let described = if d.description.is_empty() {
                String::new()
            } else {
                format!(" ({})", d.description)
            };
            rules.dedicated_ips.push(DedicatedIp {
                origin: format!("{name} dedicated_ips[{i}]{described}"),
                ip,
                ban: d.ban,
            });
        }
    }
    let routing = parse_routing(raw.gateways, raw.routes, &invalid)?;
    Ok(TrunksFile {
        rules: Arc::new(rules),
        routing,
        disabled_entries,
    })
}

fn parse_routing(
    gateways: Vec<GatewayFile>,
    routes: Vec<RouteFile>,
    invalid: &impl Fn(String, String) -> ConfigError,
) -> Result<Routing, ConfigError> {
    let mut routing = Routing::default();
    let mut names = HashSet::new();
    let mut disabled = HashSet::new();
    for (i, g) in gateways.into_iter().enumerate() {
        let key = |field: &str| format!("gateways[{i}].{field}");
        if g.name.trim().is_empty() || !names.insert(g.name.clone()) {
            return Err(invalid(
                key("name"),
                format!(
                    "invalid value {:?}: empty or duplicate gateway name",
                    g.name
                ),
            ));
        }
        let host = g.host.trim();
        let is_ip = host.parse::<IpAddr>().is_ok();
        let is_name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !is_ip && !is_name {
            return Err(invalid(
                key("host"),
                format!("invalid value {:?}: not an IP address or DNS name", g.host),
            ));
        }
        if g.port == 0 {
            return Err(invalid(key("port"), "invalid value 0".to_owned()));
        }
        if !matches!(g.transport, Proto::Udp | Proto::Tcp) {
            return Err(invalid(
                key("transport"),
                format!("invalid value \"{}\": expected udp or tcp", g.transport),
            ));
        }
        if !g
            .prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+*#".contains(&b))
        {
            return Err(invalid(
                key("prefix"),
                format!(
                    "invalid value {:?}: digits, letters, +, * and # only",
                    g.prefix
                ),
            ));
        }
        if !g.enabled {
            disabled.insert(g.name.clone());
            continue;
        }
        routing.gateways.push(GatewaySpec {
            name: g.name,
            host: host.to_owned(),
            port: g.port,
            transport: g.transport,
            weight: g.weight,
            priority: g.priority,
            strip: g.strip,
            prefix: g.prefix,
            probe: g.probe,
        });
    }
    let mut route_names = HashSet::new();
    for (i, r) in routes.into_iter().enumerate() {
        if r.name.trim().is_empty() || !route_names.insert(r.name.clone()) {
            return Err(invalid(
                format!("routes[{i}].name"),
                format!("invalid value {:?}: empty or duplicate route name", r.name),
            ));
        }
        for (j, g) in r.gateways.iter().enumerate() {
            if !names.contains(g) {
                return Err(invalid(
                    format!("routes[{i}].gateways[{j}]"),
                    format!("invalid value {g:?}: no such gateway"),
                ));
            }
        }
        if r.max_attempts == Some(0) {
            return Err(invalid(
                format!("routes[{i}].max_attempts"),
                "invalid value 0".to_owned(),
            ));
        }
        routing.routes.push(RouteSpec {
            name: r.name,
            gateways: r
                .gateways
                .into_iter()
                .filter(|g| !disabled.contains(g))
                .collect(),
            max_attempts: r.max_attempts,
        });
    }
    Ok(routing)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUNKS: &str = r#"
[[customers]]
ban = "100001"
name = "Demo"

[[customers]]
ban = "100002"
name = "Premium"
status = "suspended"

[[trunk_groups]]
id = 1
ban = "100001"
name = "pbx"
route = "demo"

[[trunk_ips]]
trunk_group = 1
cidr = "127.0.0.10"

[[trunk_ips]]
trunk_group = 1
cidr = "192.0.2.0/28"
port = 5062
proto = "tcp"
description = "office"

[[trunk_ips]]
trunk_group = 1
cidr = "::ffff:198.51.100.0/120"
enabled = false

[[dedicated_ips]]
ip = "127.0.0.2"
ban = "100002"
"#;

    fn parse(text: &str) -> Result<TrunksFile, ConfigError> {
        parse_trunks(Path::new("config/trunks.toml"), text)
    }

    #[test]
    fn valid_file() {
        let t = parse(TRUNKS).expect("valid");
        assert_eq!(t.rules.customers.len(), 2);
        assert_eq!(t.rules.customers[1].status, CustomerStatus::Suspended);
        assert_eq!(t.rules.entries.len(), 2);
        assert_eq!(t.disabled_entries, 1);
        let e = &t.rules.entries[1];
        assert_eq!(e.network, "192.0.2.0/28".parse::<IpNet>().unwrap());
        assert_eq!((e.port, e.proto, e.group), (5062, Proto::Tcp, 1));
        assert_eq!(&*e.ban, "100001");
        assert_eq!(&*e.origin, "trunks.toml trunk_ips[1] (office)");
        assert_eq!(
            t.rules.entries[0].network,
            "127.0.0.10/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            t.rules.dedicated_ips[0].ip,
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn mapped_networks_become_ipv4() {
        assert_eq!(
            parse_cidr("::ffff:198.51.100.0/120").unwrap(),
            "198.51.100.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_cidr("2001:db8::/32").unwrap(),
            "2001:db8::/32".parse::<IpNet>().unwrap()
        );
        assert!(parse_cidr("10.0.0.5/24")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/24"));
    }

    #[test]
    fn errors_name_the_key_and_value() {
        let cases = [
            (
                TRUNKS.replace("cidr = \"127.0.0.10\"", "cidr = \"127.0.0.300\""),
                "trunk_ips[0].cidr",
                "127.0.0.300",
            ),
            (
                TRUNKS.replace("proto = \"tcp\"", "proto = \"sctp\""),
                "trunk_ips[1].proto",
                "sctp",
            ),
            (
                TRUNKS.replace("port = 5062", "port = 70000"),
                "trunk_ips[1].port",
                "70000",
            ),
            (
                TRUNKS.replace(
                    "trunk_group = 1\ncidr = \"127",
                    "trunk_group = 9\ncidr = \"127",
                ),
                "trunk_ips[0].trunk_group",
                "9",
            ),
            (
                TRUNKS.replace("status = \"suspended\"", "status = \"gone\""),
                "customers[1].status",
                "gone",
            ),
            (
                TRUNKS.replace(
                    "ban = \"100002\"\nname = \"Premium\"",
                    "ban = \"100001\"\nname = \"Premium\"",
                ),
                "customers[1].ban",
                "100001",
            ),
            (
                TRUNKS.replace("ip = \"127.0.0.2\"", "ip = \"nope\""),
                "dedicated_ips[0].ip",
                "nope",
            ),
            (
                format!("{TRUNKS}\n[[trunk_groups]]\nid = 2\nban = \"999\"\nname = \"x\"\n"),
                "trunk_groups[1].ban",
                "999",
            ),
            (
                format!("{TRUNKS}\n[[customers]]\nban = \"1\"\nname = \"x\"\ncolour = \"red\"\n"),
                "customers[2]",
                "colour",
            ),
        ];
        for (text, key, value) in cases {
            let err = parse(&text).expect_err(key).to_string();
            assert!(err.starts_with("config/trunks.toml: "), "{err}");
            assert!(err.contains(key), "{err} should name {key}");
            assert!(err.contains(value), "{err} should quote {value}");
        }
    }
}
