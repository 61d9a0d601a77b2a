//! Longest-prefix-match tables behind one small trait, so the crate that backs them can be
//! swapped without touching the snapshot.
//!
//! A table maps IPv4 and IPv6 prefixes to a `u32` (the snapshot's index of that prefix) and
//! answers one question: which stored prefix is the longest one containing this address. It is
//! built once from complete lists and never changed afterwards, which is all a snapshot needs.
//!
//! Two backends are kept so `benches/acl_lookup.rs` can compare them on the same data:
//! [`IpNetworkTableLpm`] (`ip_network_table`, a tree bitmap) and [`PrefixTrieLpm`]
//! (`prefix-trie` 0.9, a multibit trie). [`DefaultLpm`] names the one the snapshot uses; the
//! numbers that chose it are in BENCHMARKS.md.

use std::net::{Ipv4Addr, Ipv6Addr};

use ip_network::{Ipv4Network, Ipv6Network};
use ip_network_table::IpNetworkTable;
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// The backend the snapshot uses (the faster one in `benches/acl_lookup.rs`).
pub type DefaultLpm = PrefixTrieLpm;

/// An immutable longest-prefix-match table for both address families.
///
/// Prefixes handed to [`LpmTable::build`] are already truncated (no host bits) and unique per
/// family; values are opaque to the table.
pub trait LpmTable: Sized + Send + Sync + 'static {
    /// The backend's name, as used in benchmark ids.
    const NAME: &'static str;

    fn build(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> Self;

    /// The value of the longest stored IPv4 prefix containing `addr`.
    fn longest_v4(&self, addr: Ipv4Addr) -> Option<u32>;

    /// The value of the longest stored IPv6 prefix containing `addr`.
    fn longest_v6(&self, addr: Ipv6Addr) -> Option<u32>;
}

// === impl IpNetworkTableLpm ===

/// `ip_network_table` 0.2: a tree bitmap per family.
pub struct IpNetworkTableLpm {
    table: IpNetworkTable<u32>,
}

impl LpmTable for IpNetworkTableLpm {
    const NAME: &'static str = "ip_network_table";

    fn build(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> Self {
        let mut table = IpNetworkTable::with_capacity(v4.len(), v6.len());
        for (net, value) in v4 {
            // `new_truncate` fails only for a prefix length above 32, which `Ipv4Net` rules out.
            if let Ok(network) = Ipv4Network::new_truncate(net.network(), net.prefix_len()) {
                table.insert(network, *value);
            }
        }
        for (net, value) in v6 {
            if let Ok(network) = Ipv6Network::new_truncate(net.network(), net.prefix_len()) {
                table.insert(network, *value);
            }
        }
        IpNetworkTableLpm { table }
    }

    #[inline]
    fn longest_v4(&self, addr: Ipv4Addr) -> Option<u32> {
        self.table.longest_match_ipv4(addr).map(|(_, value)| *value)
    }

    #[inline]
    fn longest_v6(&self, addr: Ipv6Addr) -> Option<u32> {
        self.table.longest_match_ipv6(addr).map(|(_, value)| *value)
    }
}

// === impl PrefixTrieLpm ===

/// `prefix-trie` 0.9: a multibit trie per family.
pub struct PrefixTrieLpm {
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
}

impl LpmTable for PrefixTrieLpm {
    const NAME: &'static str = "prefix_trie";

    fn build(v4: &[(Ipv4Net, u32)], v6: &[(Ipv6Net, u32)]) -> Self {
        let mut map4 = PrefixMap::new();
        for (net, value) in v4 {
            map4.insert(*net, *value);
        }
        let mut map6 = PrefixMap::new();
        for (net, value) in v6 {
            map6.insert(*net, *value);
        }
        PrefixTrieLpm { v4: map4, v6: map6 }
    }

    #[inline]
    fn longest_v4(&self, addr: Ipv4Addr) -> Option<u32> {
        self.v4
            .get_lpm(&Ipv4Net::from(addr))
            .map(|(_, value)| *value)
    }

    #[inline]
    fn longest_v6(&self, addr: Ipv6Addr) -> Option<u32> {
        self.v6
            .get_lpm(&Ipv6Net::from(addr))
            .map(|(_, value)| *value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    /// The same small table, asked the same questions, through a backend.
    fn check<T: LpmTable>() {
        let table = T::build(
            &[
                (v4("10.0.0.0/8"), 1),
                (v4("10.1.0.0/16"), 2),
                (v4("10.1.2.0/24"), 3),
                (v4("10.1.2.3/32"), 4),
                (v4("10.1.2.16/28"), 5),
            ],
            &[(v6("2001:db8::/32"), 10), (v6("2001:db8:1::1/128"), 11)],
        );
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(table.longest_v4(a("10.1.2.3")), Some(4), "{}", T::NAME);
        assert_eq!(table.longest_v4(a("10.1.2.4")), Some(3));
        assert_eq!(table.longest_v4(a("10.1.2.17")), Some(5));
        assert_eq!(table.longest_v4(a("10.1.2.32")), Some(3));
        assert_eq!(table.longest_v4(a("10.1.3.1")), Some(2));
        assert_eq!(table.longest_v4(a("10.2.0.1")), Some(1));
        assert_eq!(table.longest_v4(a("11.0.0.1")), None);
        let b = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(table.longest_v6(b("2001:db8:1::1")), Some(11));
        assert_eq!(table.longest_v6(b("2001:db8:1::2")), Some(10));
        assert_eq!(table.longest_v6(b("2001:db9::1")), None);
    }

    #[test]
    fn ip_network_table_backend() {
        check::<IpNetworkTableLpm>();
    }

    #[test]
    fn prefix_trie_backend() {
        check::<PrefixTrieLpm>();
    }

    #[test]
    fn default_route_and_empty_tables() {
        fn check_edges<T: LpmTable>() {
            let empty = T::build(&[], &[]);
            assert_eq!(empty.longest_v4(Ipv4Addr::LOCALHOST), None);
            assert_eq!(empty.longest_v6(Ipv6Addr::LOCALHOST), None);
            let all = T::build(&[(v4("0.0.0.0/0"), 7)], &[(v6("::/0"), 8)]);
            assert_eq!(all.longest_v4(Ipv4Addr::BROADCAST), Some(7), "{}", T::NAME);
            assert_eq!(all.longest_v6(Ipv6Addr::LOCALHOST), Some(8));
        }
        check_edges::<IpNetworkTableLpm>();
        check_edges::<PrefixTrieLpm>();
    }
}
