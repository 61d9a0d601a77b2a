//! Longest-prefix-match tables behind one small trait, so the crate that backs them can be
//! swapped without touching the snapshot.
//!
//! A table maps IPv4 and IPv6 prefixes to a small `Copy` value (the snapshot stores where the
//! prefix's entries sit, so a lookup costs no further indirection) and answers one question:
//! which stored prefix is the longest one containing this address. It is built once from
//! complete lists and never changed afterwards, which is all a snapshot needs.
//!
//! [`PrefixTrieLpm`] (`prefix-trie` 0.9, a multibit trie) is the backend the snapshot uses:
//! `benches/acl_lookup.rs` measures it against `ip_network_table` (a tree bitmap, implemented
//! in the bench through this same trait) and it was faster in every case; the numbers are in
//! BENCHMARKS.md.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// The backend the snapshot uses (the faster one in `benches/acl_lookup.rs`).
pub type DefaultLpm<V> = PrefixTrieLpm<V>;

/// An immutable longest-prefix-match table for both address families.
///
/// Prefixes handed to [`LpmTable::build`] are already truncated (no host bits) and unique per
/// family; values are opaque to the table.
pub trait LpmTable<V: Copy>: Sized {
    /// The backend's name, as used in benchmark ids.
    const NAME: &'static str;

    fn build(v4: &[(Ipv4Net, V)], v6: &[(Ipv6Net, V)]) -> Self;

    /// The value of the longest stored IPv4 prefix containing `addr`.
    fn longest_v4(&self, addr: Ipv4Addr) -> Option<V>;

    /// The value of the longest stored IPv6 prefix containing `addr`.
    fn longest_v6(&self, addr: Ipv6Addr) -> Option<V>;
}

// === impl PrefixTrieLpm ===

/// `prefix-trie` 0.9: a multibit trie per family.
pub struct PrefixTrieLpm<V> {
    v4: PrefixMap<Ipv4Net, V>,
    v6: PrefixMap<Ipv6Net, V>,
}

impl<V: Copy> LpmTable<V> for PrefixTrieLpm<V> {
    const NAME: &'static str = "prefix_trie";

    fn build(v4: &[(Ipv4Net, V)], v6: &[(Ipv6Net, V)]) -> Self {
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
    fn longest_v4(&self, addr: Ipv4Addr) -> Option<V> {
        self.v4
            .get_lpm(&Ipv4Net::from(addr))
            .map(|(_, value)| *value)
    }

    #[inline]
    fn longest_v6(&self, addr: Ipv6Addr) -> Option<V> {
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
    fn check<T: LpmTable<u32>>() {
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
    fn prefix_trie_backend() {
        check::<PrefixTrieLpm<u32>>();
    }

    #[test]
    fn default_route_and_empty_tables() {
        fn check_edges<T: LpmTable<u32>>() {
            let empty = T::build(&[], &[]);
            assert_eq!(empty.longest_v4(Ipv4Addr::LOCALHOST), None);
            assert_eq!(empty.longest_v6(Ipv6Addr::LOCALHOST), None);
            let all = T::build(&[(v4("0.0.0.0/0"), 7)], &[(v6("::/0"), 8)]);
            assert_eq!(all.longest_v4(Ipv4Addr::BROADCAST), Some(7), "{}", T::NAME);
            assert_eq!(all.longest_v6(Ipv6Addr::LOCALHOST), Some(8));
        }
        check_edges::<PrefixTrieLpm<u32>>();
    }
}
