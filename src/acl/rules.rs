//! The rules every ACL source produces (trunks file, PostgreSQL, Redis): customers, trunk
//! groups, trunk IP entries and dedicated ingress IPs. A [`RuleSet`] is plain data; the
//! [`super::Snapshot`] compiles it for lookups. It serialises (serde) for the last-known-good
//! file of the store sources.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A customer's account number (BAN), the tag on every ACL entry.
pub type Ban = String;

/// Which transports an entry admits (Kamailio has no such column; WARP's Redis copy adds it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Any,
    Udp,
    Tcp,
    Tls,
}

impl Proto {
    /// True when an entry with this proto admits a request that arrived over `transport`.
    pub fn admits(self, transport: Proto) -> bool {
        self == Proto::Any || self == transport
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Any => "any",
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
            Proto::Tls => "tls",
        }
    }
}

impl FromStr for Proto {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "any" => Ok(Proto::Any),
            "udp" => Ok(Proto::Udp),
            "tcp" => Ok(Proto::Tcp),
            "tls" => Ok(Proto::Tls),
            _ => Err(format!(
                "unknown proto {s:?} (expected any, udp, tcp or tls)"
            )),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomerStatus {
    #[default]
    Active,
    Suspended,
    Closed,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    #[default]
    IpAcl,
    Digest,
    Both,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Customer {
    pub ban: Ban,
    pub name: String,
    pub status: CustomerStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct TrunkGroup {
    pub id: i64,
    pub ban: Ban,
    pub name: String,
    pub auth_type: AuthType,
    pub max_cps: Option<u32>,
    pub max_concurrent_calls: Option<u32>,
    /// The vendor route calls from this trunk take (issue 4).
    pub route: Option<String>,
    pub enabled: bool,
}

/// One ACL entry: Kamailio's `address` row plus WARP's `proto` and trunk group.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct AclEntry {
    /// Where the entry came from, for `acl explain` and logs (`trunks.toml trunk_ips[3]`,
    /// `postgres trunk_ips id=42`, `redis address:entry::7`).
    /// Shared (`Arc<str>`, like `ban`): a source's rules are copied on every change, and a
    /// copy of 100k entries then costs reference counts, not allocations.
    pub origin: Arc<str>,
    /// Kamailio's `grp`; the edge uses only its configured group (default 1). Always >= 1.
    pub group: u32,
    /// A host (/32, /128) or a CIDR range. IPv4-mapped IPv6 networks are stored as IPv4.
    pub network: IpNet,
    /// 0 matches any source port.
    pub port: u16,
    pub proto: Proto,
    /// The tag: the customer's BAN.
    pub ban: Arc<str>,
    /// The trunk group, when the source knows it (the Kamailio format does not).
    pub trunk_group: Option<i64>,
}

/// A local (ingress) IP that belongs to one premium customer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct DedicatedIp {
    pub origin: String,
    pub ip: IpAddr,
    pub ban: Ban,
}

/// Everything one source says, already filtered to enabled rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RuleSet {
    pub customers: Vec<Customer>,
    pub trunk_groups: Vec<TrunkGroup>,
    pub entries: Vec<AclEntry>,
    pub dedicated_ips: Vec<DedicatedIp>,
}

impl RuleSet {
    /// Appends another source's rules (the `union` combination).
    pub fn extend(&mut self, other: RuleSet) {
        self.customers.extend(other.customers);
        self.trunk_groups.extend(other.trunk_groups);
        self.entries.extend(other.entries);
        self.dedicated_ips.extend(other.dedicated_ips);
    }
}
