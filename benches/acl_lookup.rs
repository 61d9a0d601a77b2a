//! ACL lookups and snapshot builds, for both prefix-table backends (`ip_network_table` and
//! `prefix-trie` 0.9) through the same `LpmTable` trait the snapshot uses.
//!
//! - `lpm/<backend>/<size>/<hit|miss|v6-hit>`: one longest-prefix lookup in the raw table.
//! - `decide/<backend>/<size>/<hit|miss|v6-hit>`: one `Snapshot::decide`, the per-request
//!   cost (dedicated-IP check, lookup, entry selection, status checks).
//! - `build/<backend>/100k`: `Snapshot::build` from a 100k-entry rule set.
//!
//! Tables hold 1k, 100k and 1M random IPv4 prefixes, a third each /32, /28 and /24, seeded so
//! every run and both backends see the same data; at 100k also 100k IPv6 prefixes (/128, /64,
//! /48). Hits are random addresses inside random
//! stored prefixes; misses are random addresses no prefix contains. Each iteration looks up
//! the next of 4096 prepared addresses, so one address's cache lines do not flatter the trie.
//! Filter by backend to alternate runs: `cargo bench --bench acl_lookup -- prefix_trie`.
//! Results and the exact commands are in BENCHMARKS.md.

use std::cell::OnceCell;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ip_network::{Ipv4Network, Ipv6Network};
use ip_network_table::IpNetworkTable;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use warp_edge::acl::{
    AclEntry, AclRequest, AuthType, Customer, CustomerStatus, Decision, DenyReason, LpmTable,
    PrefixSlot, PrefixTrieLpm, Proto, RuleSet, Snapshot, TrunkGroup,
};

// === the other backend: ip_network_table ===

/// `ip_network_table` 0.2, a tree bitmap per family, behind the snapshot's `LpmTable` trait.
/// It lost to prefix-trie in every case measured here, so only this bench uses it.
pub struct IpNetworkTableLpm<V> {
    table: IpNetworkTable<V>,
}

impl<V: Copy> LpmTable<V> for IpNetworkTableLpm<V> {
    const NAME: &'static str = "ip_network_table";

    fn build(v4: &[(Ipv4Net, V)], v6: &[(Ipv6Net, V)]) -> Self {
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
    fn longest_v4(&self, addr: Ipv4Addr) -> Option<V> {
        self.table.longest_match_ipv4(addr).map(|(_, value)| *value)
    }

    #[inline]
    fn longest_v6(&self, addr: Ipv6Addr) -> Option<V> {
        self.table.longest_match_ipv6(addr).map(|(_, value)| *value)
    }
}

/// Prepared lookups per case; a power of two so the index wraps with a mask.
const ADDRESSES: usize = 4096;
const SIZES: [(usize, &str); 3] = [(1_000, "1k"), (100_000, "100k"), (1_000_000, "1M")];
const UNKNOWN: Decision<'static> = Decision::Deny {
    reason: DenyReason::UnknownSource,
    customer: None,
};
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));

/// xorshift64: a seeded generator without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `count` IPv4 prefixes, a third each /32, /28 and /24 (duplicates possible, as in real rule
/// sets with several rows per prefix).
fn v4_prefixes(count: usize, seed: u64) -> Vec<Ipv4Net> {
    let mut rng = XorShift(seed);
    (0..count)
        .map(|_| {
            let len = [32, 28, 24][rng.below(3) as usize];
            let addr = Ipv4Addr::from(rng.next() as u32);
            Ipv4Net::new(addr, len).map_or(Ipv4Net::default(), |n| n.trunc())
        })
        .collect()
}

/// IPv6 prefixes, a third each /128, /64 and /48, under 2000::/4.
fn v6_prefixes(count: usize, seed: u64) -> Vec<Ipv6Net> {
    let mut rng = XorShift(seed);
    (0..count)
        .map(|_| {
            let len = [128, 64, 48][rng.below(3) as usize];
            let bits = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 4;
            let addr = Ipv6Addr::from(0x2000_u128 << 112 | bits);
            Ipv6Net::new(addr, len).map_or(Ipv6Net::default(), |n| n.trunc())
        })
        .collect()
}

/// Random addresses inside random prefixes of `prefixes`.
fn v4_hits(prefixes: &[Ipv4Net], seed: u64) -> Vec<Ipv4Addr> {
    let mut rng = XorShift(seed);
    (0..ADDRESSES)
        .map(|_| {
            let net = prefixes[rng.below(prefixes.len() as u64) as usize];
            let host = (rng.next() as u32) & !u32::from(net.netmask());
            Ipv4Addr::from(u32::from(net.network()) | host)
        })
        .collect()
}

fn v6_hits(prefixes: &[Ipv6Net], seed: u64) -> Vec<Ipv6Addr> {
    let mut rng = XorShift(seed);
    (0..ADDRESSES)
        .map(|_| {
            let net = prefixes[rng.below(prefixes.len() as u64) as usize];
            let random = u128::from(rng.next()) << 64 | u128::from(rng.next());
            let host = random & !u128::from(net.netmask());
            Ipv6Addr::from(u128::from(net.network()) | host)
        })
        .collect()
}

/// Random addresses for which `contained` says no.
fn v4_misses(contained: impl Fn(Ipv4Addr) -> bool, seed: u64) -> Vec<Ipv4Addr> {
    let mut rng = XorShift(seed);
    let mut out = Vec::with_capacity(ADDRESSES);
    while out.len() < ADDRESSES {
        let addr = Ipv4Addr::from(rng.next() as u32);
        if !contained(addr) {
            out.push(addr);
        }
    }
    out
}

/// A raw table's input: unique prefixes, values their position.
fn unique(prefixes: &[Ipv4Net]) -> Vec<(Ipv4Net, u32)> {
    let mut unique = prefixes.to_vec();
    unique.sort_unstable();
    unique.dedup();
    unique.into_iter().zip(0..).collect()
}

/// A rule set shaped like production: 1000 customers, a trunk group each, entries spread
/// over them, a few port and proto restrictions.
fn rule_set(v4: &[Ipv4Net], v6: &[Ipv6Net]) -> RuleSet {
    const CUSTOMERS: usize = 1000;
    let customers = (0..CUSTOMERS)
        .map(|i| Customer {
            ban: format!("{}", 100_000 + i),
            name: format!("customer {i}"),
            status: CustomerStatus::Active,
        })
        .collect::<Vec<_>>();
    let trunk_groups = customers
        .iter()
        .zip(0..)
        .map(|(customer, id)| TrunkGroup {
            id,
            ban: customer.ban.clone(),
            name: format!("trunk {id}"),
            auth_type: AuthType::IpAcl,
            max_cps: None,
            max_concurrent_calls: None,
            route: None,
            enabled: true,
        })
        .collect::<Vec<_>>();
    let networks = v4
        .iter()
        .map(|n| IpNet::V4(*n))
        .chain(v6.iter().map(|n| IpNet::V6(*n)));
    let entries = networks
        .enumerate()
        .map(|(i, network)| {
            let trunk = i % CUSTOMERS;
            AclEntry {
                origin: format!("bench[{i}]").into(),
                group: 1,
                network,
                port: if i % 10 == 0 { 5060 } else { 0 },
                proto: if i % 7 == 0 { Proto::Udp } else { Proto::Any },
                ban: customers[trunk].ban.as_str().into(),
                trunk_group: Some(trunk as i64),
            }
        })
        .collect();
    RuleSet {
        customers,
        trunk_groups,
        entries,
        dedicated_ips: Vec::new(),
    }
}

fn request(ip: IpAddr) -> AclRequest {
    AclRequest {
        source: SocketAddr::new(ip, 5060),
        local: LOCAL,
        transport: Proto::Udp,
    }
}

/// Lookups in the raw table and through `decide`, for one backend and one size.
/// `R` is the raw table (values `u32`), `S` the same backend holding a snapshot's slots.
fn lookups<R, S>(c: &mut Criterion, size: usize, label: &str)
where
    R: LpmTable<u32>,
    S: LpmTable<PrefixSlot>,
{
    let seed = 0x5eed_0000 + size as u64;
    let prefixes = v4_prefixes(size, seed);
    let hits = v4_hits(&prefixes, seed ^ 0xa5a5);
    // IPv6 only at 100k: the same number of IPv6 prefixes again.
    let v6 = if size == 100_000 {
        v6_prefixes(size, seed ^ 0x66)
    } else {
        Vec::new()
    };
    let v6_hits = if v6.is_empty() {
        Vec::new()
    } else {
        v6_hits(&v6, seed ^ 0x77)
    };

    // Built only if a benchmark of this group survives the command-line filter.
    let table: OnceCell<(R, Vec<Ipv4Addr>)> = OnceCell::new();
    let table = || {
        table.get_or_init(|| {
            let mut v6_unique = v6.clone();
            v6_unique.sort_unstable();
            v6_unique.dedup();
            let v6_unique: Vec<(Ipv6Net, u32)> = v6_unique.into_iter().zip(0..).collect();
            let table = R::build(&unique(&prefixes), &v6_unique);
            let misses = v4_misses(|a| table.longest_v4(a).is_some(), seed ^ 0x5a5a);
            (table, misses)
        })
    };
    for (case, hit) in [("hit", true), ("miss", false)] {
        c.bench_function(&format!("lpm/{}/{label}/{case}", R::NAME), |b| {
            let (table, misses) = table();
            let addrs = if hit { &hits } else { misses };
            assert_eq!(table.longest_v4(addrs[0]).is_some(), hit);
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(table.longest_v4(black_box(addrs[i])))
            })
        });
    }
    if !v6.is_empty() {
        c.bench_function(&format!("lpm/{}/{label}/v6-hit", R::NAME), |b| {
            let (table, _) = table();
            assert!(table.longest_v6(v6_hits[0]).is_some());
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(table.longest_v6(black_box(v6_hits[i])))
            })
        });
    }
    let snapshot: OnceCell<(Snapshot<S>, Vec<Ipv4Addr>)> = OnceCell::new();
    let snapshot = || {
        snapshot.get_or_init(|| {
            let rules = rule_set(&prefixes, &v6);
            let snapshot =
                Snapshot::<S>::build_with(Arc::new(rules), 1).expect("bench rules build");
            let known = |a| snapshot.decide(&request(IpAddr::V4(a))) != UNKNOWN;
            let misses = v4_misses(known, seed ^ 0x5a5a);
            (snapshot, misses)
        })
    };
    let mut cases = vec![(
        "hit",
        hits.iter().map(|a| IpAddr::V4(*a)).collect::<Vec<_>>(),
    )];
    cases.push(("miss", Vec::new()));
    if !v6.is_empty() {
        cases.push(("v6-hit", v6_hits.iter().map(|a| IpAddr::V6(*a)).collect()));
    }
    for (case, addrs) in cases {
        c.bench_function(&format!("decide/{}/{label}/{case}", S::NAME), |b| {
            let (snapshot, misses) = snapshot();
            let requests: Vec<AclRequest> = if case == "miss" {
                misses.iter().map(|a| request(IpAddr::V4(*a))).collect()
            } else {
                addrs.iter().map(|a| request(*a)).collect()
            };
            // Every row admits udp from port 5060, so every hit is allowed.
            assert!(requests
                .iter()
                .all(|r| snapshot.decide(r).is_allow() == (case != "miss")));
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & (ADDRESSES - 1);
                black_box(snapshot.decide(black_box(&requests[i])).is_allow())
            })
        });
    }
}

fn build<T: LpmTable<PrefixSlot>>(c: &mut Criterion, rules: &Arc<RuleSet>) {
    c.bench_function(&format!("build/{}/100k", T::NAME), |b| {
        b.iter_with_large_drop(|| Snapshot::<T>::build_with(black_box(rules.clone()), 1))
    });
}

/// The two backends must agree before their speeds are compared: every hit and miss of the
/// 100k set, and every probe address, gets the same longest prefix from both.
fn backends_agree() {
    let prefixes = v4_prefixes(100_000, 0xa9ee);
    let table = unique(&prefixes);
    let trie = PrefixTrieLpm::<u32>::build(&table, &[]);
    let tree = IpNetworkTableLpm::<u32>::build(&table, &[]);
    let misses = v4_misses(|a| trie.longest_v4(a).is_some(), 0xa9ef);
    for addr in v4_hits(&prefixes, 0xa9f0).into_iter().chain(misses) {
        assert_eq!(
            trie.longest_v4(addr),
            tree.longest_v4(addr),
            "backends disagree on {addr}"
        );
    }
}

fn acl(c: &mut Criterion) {
    backends_agree();
    for (size, label) in SIZES {
        lookups::<IpNetworkTableLpm<u32>, IpNetworkTableLpm<PrefixSlot>>(c, size, label);
        lookups::<PrefixTrieLpm<u32>, PrefixTrieLpm<PrefixSlot>>(c, size, label);
    }
    let rules = Arc::new(rule_set(&v4_prefixes(100_000, 0xb111d), &[]));
    build::<IpNetworkTableLpm<PrefixSlot>>(c, &rules);
    build::<PrefixTrieLpm<PrefixSlot>>(c, &rules);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = acl
}
criterion_main!(benches);
