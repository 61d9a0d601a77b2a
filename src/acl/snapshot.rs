//! The compiled ACL: one immutable value built from a [`RuleSet`] off the hot path, then asked
//! one question per request ([`Snapshot::decide`]) without allocating or locking.
//!
//! # Matching
//! - A dedicated ingress IP (the request's local address) wins over the source ACL.
//! - Otherwise the source IP is looked up by longest prefix. Each prefix may carry several
//!   entries (different ports, protos, trunks). The most specific prefix holding an entry that
//!   admits the request wins: its port is 0 or the source port, and its proto is `any` or the
//!   transport. A /32 that only admits TCP therefore does not hide a covering /24 admitting UDP.
//! - Among one prefix's admitting entries: an exact port beats port 0, then an exact proto
//!   beats `any`, then the earlier entry in the rule set wins.
//! - The winner decides. A suspended or closed customer is denied, by either path; then a
//!   disabled trunk group is denied. There is no fallback to a less specific entry.
//! - No winner: `transport_not_allowed` when some covering entry matched the port but not the
//!   transport, else `unknown_source`.
//!
//! # Building
//! - Only entries of the edge's group are used; others are counted, never dropped silently.
//!   Every other entry lands in the table or fails the build.
//! - An entry or dedicated IP whose BAN has no customer row belongs to an implied active
//!   customer: the Kamailio-format Redis source carries only the address table.
//! - IPv4-mapped IPv6 addresses and networks (`::ffff:0:0/96` and longer) are IPv4. A network
//!   is truncated to its prefix (`10.0.0.7/24` is `10.0.0.0/24`), as Kamailio masks it.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::error::AclError;
use super::rules::{Customer, CustomerStatus, Proto, RuleSet, TrunkGroup};
use super::table::{DefaultLpm, LpmTable};

/// Marks a prefix with no covering prefix in the snapshot.
const NO_PARENT: u32 = u32::MAX;

/// What the edge knows about a request when it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclRequest {
    /// The packet's source address and port.
    pub source: SocketAddr,
    /// The local address the packet arrived on (a dedicated ingress IP or a shared one).
    pub local: IpAddr,
    pub transport: Proto,
}

/// The answer for one request. `customer` borrows the snapshot, so holding a decision keeps
/// its snapshot alive; copy the BAN out to keep it longer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    Allow {
        /// The customer's BAN.
        customer: &'a str,
        /// The trunk group, when the matched entry names one (a dedicated IP never does).
        trunk: Option<i64>,
        via: MatchedBy,
    },
    Deny {
        reason: DenyReason,
        /// The customer, when the request was recognised and then refused (suspended, or a
        /// disabled trunk group); `None` for an unknown source.
        customer: Option<&'a str>,
    },
}

impl Decision<'_> {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

impl fmt::Display for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow {
                customer,
                trunk,
                via,
            } => {
                write!(f, "allow: customer {customer}")?;
                if let Some(trunk) = trunk {
                    write!(f, ", trunk group {trunk}")?;
                }
                write!(f, ", via {}", via.as_str())
            }
            Decision::Deny { reason, customer } => {
                write!(f, "deny: {}", reason.as_str())?;
                if let Some(customer) = customer {
                    write!(f, ", customer {customer}")?;
                }
                Ok(())
            }
        }
    }
}

/// How an allowed request was recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchedBy {
    SourceIp,
    DedicatedIp,
}

impl MatchedBy {
    /// The metric label and log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            MatchedBy::SourceIp => "source_ip",
            MatchedBy::DedicatedIp => "dedicated_ip",
        }
    }
}

/// Why a request was refused; `as_str` is the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    UnknownSource,
    CustomerSuspended,
    TrunkDisabled,
    TransportNotAllowed,
}

impl DenyReason {
    pub const ALL: [DenyReason; 4] = [
        DenyReason::UnknownSource,
        DenyReason::CustomerSuspended,
        DenyReason::TrunkDisabled,
        DenyReason::TransportNotAllowed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DenyReason::UnknownSource => "unknown_source",
            DenyReason::CustomerSuspended => "customer_suspended",
            DenyReason::TrunkDisabled => "trunk_disabled",
            DenyReason::TransportNotAllowed => "transport_not_allowed",
        }
    }
}

/// What a snapshot holds, for logs after a reload and for `acl explain`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Entries of the edge's group, by family after IPv4-mapped networks became IPv4.
    pub v4_entries: usize,
    pub v6_entries: usize,
    /// Distinct dedicated ingress IPs.
    pub dedicated_ips: usize,
    /// Listed customers plus the active ones implied by entries without a customer row.
    pub customers: usize,
    /// Distinct trunk group ids.
    pub trunk_groups: usize,
    /// Entries left out because they belong to another group.
    pub skipped_other_group: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ipv4 entries, {} ipv6 entries, {} dedicated ips, {} customers, {} trunk groups, \
             {} entries of other groups skipped",
            self.v4_entries,
            self.v6_entries,
            self.dedicated_ips,
            self.customers,
            self.trunk_groups,
            self.skipped_other_group
        )
    }
}

// === compiled data ===

/// Where one prefix's entries sit in a snapshot: the value its prefix table stores, so a
/// lookup lands on the entries without another indirection. Opaque outside this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixSlot {
    /// This prefix's own index (in `nodes` and `networks`).
    index: u32,
    /// Its entries are `entries[start..end]`, in preference order.
    start: u32,
    end: u32,
    /// The next less specific prefix containing this one, or [`NO_PARENT`].
    parent: u32,
}

/// An entry as the hot path needs it: deciding reads nothing else. Its place in the rule set
/// (for its origin) sits at the same index in `positions`.
#[derive(Clone, Debug)]
struct CompiledEntry {
    ban: Arc<str>,
    trunk: Option<i64>,
    customer: u32,
    port: u16,
    proto: Proto,
    status: CustomerStatus,
    trunk_enabled: bool,
}

#[derive(Clone, Debug)]
struct CustomerRow {
    ban: Arc<str>,
    status: CustomerStatus,
    /// False for a customer implied by an entry's BAN.
    listed: bool,
}

#[derive(Clone, Debug)]
struct DedicatedRow {
    ip: IpAddr,
    customer: u32,
    origin: String,
}

/// An immutable, compiled ACL. `T` is the prefix table backend; everything but the
/// benchmarks uses the default.
pub struct Snapshot<T = DefaultLpm<PrefixSlot>> {
    group: u32,
    table: T,
    nodes: Vec<PrefixSlot>,
    /// The prefix of each node, kept apart from the hot `nodes`.
    networks: Vec<IpNet>,
    entries: Vec<CompiledEntry>,
    /// Each entry's index in `rules.entries`: origins are read from the rule set the snapshot
    /// was built from, not copied (100k strings were a third of a build).
    positions: Vec<u32>,
    rules: Arc<RuleSet>,
    customers: Vec<CustomerRow>,
    /// Sorted by `ip` for binary search.
    dedicated: Vec<DedicatedRow>,
    counts: Counts,
    /// Each trunk group's route name (forwarding reads it once per call).
    trunk_routes: HashMap<i64, Arc<str>>,
}

impl<T> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("group", &self.group)
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

/// Which rule made a decision, as an index into the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Winner {
    Nothing,
    Dedicated(usize),
    Entry { node: usize, entry: usize },
}

// === impl Snapshot ===

impl Snapshot {
    /// Compiles `rules` for the edge's `group` (Kamailio's `grp`, default 1). The snapshot keeps
    /// `rules` (shared, not copied) for the origins `acl explain` shows.
    pub fn build(rules: Arc<RuleSet>, group: u32) -> Result<Snapshot, AclError> {
        Snapshot::build_with(rules, group)
    }

    /// A snapshot that denies everything (`unknown_source`): the state before the first load.
    pub fn empty() -> Snapshot {
        Snapshot::empty_with()
    }
}

impl<T: LpmTable<PrefixSlot>> Snapshot<T> {
    /// [`Snapshot::build`] over a chosen table backend (for the benchmarks).
    pub fn build_with(rules: Arc<RuleSet>, group: u32) -> Result<Snapshot<T>, AclError> {
        let mut snapshot = Builder::new(&rules, group)?.finish()?;
        snapshot.trunk_routes = rules
            .trunk_groups
            .iter()
            .filter_map(|t| Some((t.id, Arc::from(t.route.as_deref()?))))
            .collect();
        snapshot.rules = rules;
        Ok(snapshot)
    }

    /// Every customer's BAN, listed or implied by an entry, once each.
    pub fn bans(&self) -> impl Iterator<Item = &str> {
        self.customers.iter().map(|c| &*c.ban)
    }

    /// The route a trunk group's calls take, when it names one.
    pub fn trunk_route(&self, trunk: i64) -> Option<&str> {
        self.trunk_routes.get(&trunk).map(|r| &**r)
    }

    pub fn empty_with() -> Snapshot<T> {
        Snapshot {
            group: 1,
            table: T::build(&[], &[]),
            nodes: Vec::new(),
            networks: Vec::new(),
            entries: Vec::new(),
            positions: Vec::new(),
            rules: Arc::default(),
            customers: Vec::new(),
            dedicated: Vec::new(),
            counts: Counts::default(),
            trunk_routes: HashMap::new(),
        }
    }

    /// The group this snapshot was built for.
    pub fn group(&self) -> u32 {
        self.group
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Decides one request. Allocates nothing and takes no lock: one call per request.
    #[inline]
    pub fn decide(&self, req: &AclRequest) -> Decision<'_> {
        self.resolve(req).0
    }

    /// The decision for `req` and the rules that made it, for `warp-edge acl explain`.
    pub fn explain(&self, req: &AclRequest) -> Explanation<'_> {
        let (decision, winner) = self.resolve(req);
        let mut considered = Vec::new();
        let matched = match winner {
            Winner::Dedicated(index) => self.dedicated.get(index).map(|row| {
                MatchedRule::Dedicated(DedicatedView {
                    origin: &row.origin,
                    ip: row.ip,
                    ban: self.ban(row.customer),
                    status: self.status(row.customer),
                })
            }),
            Winner::Entry { node, entry } => Some(MatchedRule::Entry(self.rule_view(node, entry))),
            Winner::Nothing => None,
        };
        if !matches!(winner, Winner::Dedicated(_)) {
            let source = req.source.ip().to_canonical();
            let mut node = self.longest(source);
            while let Some(prefix) = node {
                let index = prefix.index as usize;
                let mut rules = Vec::new();
                for entry in prefix.start as usize..prefix.end as usize {
                    let Some(compiled) = self.entries.get(entry) else {
                        break;
                    };
                    let verdict = if !port_admits(compiled.port, req.source.port()) {
                        Verdict::PortMismatch
                    } else if !compiled.proto.admits(req.transport) {
                        Verdict::TransportMismatch
                    } else {
                        Verdict::Admits
                    };
                    rules.push((self.rule_view(index, entry), verdict));
                }
                considered.push(ConsideredPrefix {
                    network: self.networks.get(index).copied().unwrap_or(source.into()),
                    rules,
                });
                if matches!(winner, Winner::Entry { node, .. } if node == index) {
                    break;
                }
                node = self.node(prefix.parent);
            }
        }
        Explanation {
            request: *req,
            decision,
            matched,
            considered,
        }
    }

    // --- hot path ---

    fn resolve(&self, req: &AclRequest) -> (Decision<'_>, Winner) {
        let local = req.local.to_canonical();
        if let Ok(index) = self.dedicated.binary_search_by(|row| row.ip.cmp(&local)) {
            if let Some(row) = self.dedicated.get(index) {
                let decision = match self.customers.get(row.customer as usize) {
                    Some(customer) => decide_winner(
                        &customer.ban,
                        customer.status,
                        None,
                        true,
                        MatchedBy::DedicatedIp,
                    ),
                    None => Decision::Deny {
                        reason: DenyReason::UnknownSource,
                        customer: None,
                    },
                };
                return (decision, Winner::Dedicated(index));
            }
        }

        let mut node = self.longest(req.source.ip().to_canonical());
        let port = req.source.port();
        let mut wrong_transport = false;
        while let Some(prefix) = node {
            let start = prefix.start as usize;
            let entries = self.entries.get(start..prefix.end as usize).unwrap_or(&[]);
            for (offset, entry) in entries.iter().enumerate() {
                if !port_admits(entry.port, port) {
                    continue;
                }
                if !entry.proto.admits(req.transport) {
                    wrong_transport = true;
                    continue;
                }
                let decision = decide_winner(
                    &entry.ban,
                    entry.status,
                    entry.trunk,
                    entry.trunk_enabled,
                    MatchedBy::SourceIp,
                );
                let winner = Winner::Entry {
                    node: prefix.index as usize,
                    entry: start + offset,
                };
                return (decision, winner);
            }
            node = self.node(prefix.parent);
        }
        let reason = if wrong_transport {
            DenyReason::TransportNotAllowed
        } else {
            DenyReason::UnknownSource
        };
        (
            Decision::Deny {
                reason,
                customer: None,
            },
            Winner::Nothing,
        )
    }

    #[inline]
    fn longest(&self, ip: IpAddr) -> Option<PrefixSlot> {
        match ip {
            IpAddr::V4(addr) => self.table.longest_v4(addr),
            IpAddr::V6(addr) => self.table.longest_v6(addr),
        }
    }

    /// The prefix at `index` (a parent link); `None` for [`NO_PARENT`].
    #[inline]
    fn node(&self, index: u32) -> Option<PrefixSlot> {
        self.nodes.get(index as usize).copied()
    }

    // --- explain helpers ---

    fn ban(&self, customer: u32) -> &str {
        self.customers
            .get(customer as usize)
            .map_or("", |row| &*row.ban)
    }

    fn status(&self, customer: u32) -> CustomerStatus {
        self.customers
            .get(customer as usize)
            .map_or(CustomerStatus::Active, |row| row.status)
    }

    fn rule_view(&self, node: usize, entry: usize) -> RuleView<'_> {
        let compiled = self.entries.get(entry);
        let customer = compiled.map_or(u32::MAX, |e| e.customer);
        RuleView {
            origin: self
                .positions
                .get(entry)
                .and_then(|&p| self.rules.entries.get(p as usize))
                .map_or("", |e| &*e.origin),
            network: self
                .networks
                .get(node)
                .copied()
                .unwrap_or(IpNet::V4(Ipv4Net::default())),
            port: compiled.map_or(0, |e| e.port),
            proto: compiled.map_or(Proto::Any, |e| e.proto),
            ban: self.ban(customer),
            customer_status: self.status(customer),
            customer_listed: self
                .customers
                .get(customer as usize)
                .is_some_and(|row| row.listed),
            trunk_group: compiled.and_then(|e| e.trunk),
            trunk_enabled: compiled.is_none_or(|e| e.trunk_enabled),
        }
    }
}

/// The decision once a rule won: customer status first, then the trunk group.
#[inline]
fn decide_winner(
    ban: &str,
    status: CustomerStatus,
    trunk: Option<i64>,
    trunk_enabled: bool,
    via: MatchedBy,
) -> Decision<'_> {
    if status != CustomerStatus::Active {
        Decision::Deny {
            reason: DenyReason::CustomerSuspended,
            customer: Some(ban),
        }
    } else if !trunk_enabled {
        Decision::Deny {
            reason: DenyReason::TrunkDisabled,
            customer: Some(ban),
        }
    } else {
        Decision::Allow {
            customer: ban,
            trunk,
            via,
        }
    }
}

#[inline]
fn port_admits(entry_port: u16, source_port: u16) -> bool {
    entry_port == 0 || entry_port == source_port
}

/// IPv4-mapped IPv6 networks become IPv4; host bits are cleared.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map_or(IpNet::V6(v6.trunc()), |v4| IpNet::V4(v4.trunc())),
            None => IpNet::V6(v6.trunc()),
        },
        other => other.trunc(),
    }
}

// === build ===

/// An entry of the edge's group, before it is sorted onto its prefix. Small, so sorting
/// moves little and the pass after it reads in order.
struct Staged {
    key: SortKey,
    net: IpNet,
    customer: u32,
    trunk: Option<i64>,
    trunk_enabled: bool,
    port: u16,
    proto: Proto,
}

/// What staged entries sort by: the network's address bits, then (packed) prefix length,
/// port 0 after an exact port, `any` after an exact proto, and the input position (whose
/// low 32 bits the key carries). Containing prefixes sort before the prefixes they contain.
/// Each family sorts on its own, IPv4 first.
type SortKey = (u128, u64);

fn sort_key(bits: u128, prefix_len: u8, any_port: bool, any_proto: bool, position: u32) -> SortKey {
    let packed = u64::from(prefix_len) << 34
        | u64::from(any_port) << 33
        | u64::from(any_proto) << 32
        | u64::from(position);
    (bits, packed)
}

struct Builder<'r> {
    rules: &'r RuleSet,
    group: u32,
    customers: Vec<CustomerRow>,
    by_ban: HashMap<&'r str, u32>,
    listed: Vec<Option<&'r Customer>>,
    trunks: HashMap<i64, &'r TrunkGroup>,
    /// Each trunk group's customer index and BAN once an entry named it: the entries of a
    /// trunk group all carry its BAN, so one hash of the BAN per trunk group, not per entry,
    /// and a pointer compare when the source shares one string per BAN.
    trunk_customers: HashMap<i64, (u32, *const u8)>,
}

impl<'r> Builder<'r> {
    fn new(rules: &'r RuleSet, group: u32) -> Result<Builder<'r>, AclError> {
        if group == 0 {
            return Err(AclError::GroupZero);
        }
        if rules.entries.len() >= NO_PARENT as usize {
            return Err(AclError::TooManyEntries {
                count: rules.entries.len(),
            });
        }
        let mut builder = Builder {
            rules,
            group,
            customers: Vec::with_capacity(rules.customers.len()),
            by_ban: HashMap::with_capacity(rules.customers.len()),
            listed: Vec::with_capacity(rules.customers.len()),
            trunks: HashMap::with_capacity(rules.trunk_groups.len()),
            trunk_customers: HashMap::with_capacity(rules.trunk_groups.len()),
        };
        for customer in &rules.customers {
            match builder.by_ban.entry(customer.ban.as_str()) {
                MapEntry::Occupied(seen) => {
                    let first = builder.listed.get(*seen.get() as usize).copied().flatten();
                    if first != Some(customer) {
                        return Err(AclError::DuplicateCustomer {
                            ban: customer.ban.clone(),
                        });
                    }
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(builder.customers.len() as u32);
                    builder.customers.push(CustomerRow {
                        ban: Arc::from(customer.ban.as_str()),
                        status: customer.status,
                        listed: true,
                    });
                    builder.listed.push(Some(customer));
                }
            }
        }
        for trunk in &rules.trunk_groups {
            match builder.trunks.entry(trunk.id) {
                MapEntry::Occupied(seen) => {
                    if *seen.get() != trunk {
                        return Err(AclError::DuplicateTrunkGroup {
                            trunk_group: trunk.id,
                        });
                    }
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(trunk);
                }
            }
            if !rules.customers.is_empty() && !builder.by_ban.contains_key(trunk.ban.as_str()) {
                return Err(AclError::UnknownCustomer {
                    trunk_group: trunk.id,
                    ban: trunk.ban.clone(),
                });
            }
        }
        Ok(builder)
    }

    /// The customer index for `ban`, implying an active customer when there is no row.
    fn customer(&mut self, ban: &'r str) -> u32 {
        match self.by_ban.entry(ban) {
            MapEntry::Occupied(seen) => *seen.get(),
            MapEntry::Vacant(slot) => {
                let index = self.customers.len() as u32;
                slot.insert(index);
                self.customers.push(CustomerRow {
                    ban: Arc::from(ban),
                    status: CustomerStatus::Active,
                    listed: false,
                });
                self.listed.push(None);
                index
            }
        }
    }

    fn compiled(
        &self,
        customer: u32,
        port: u16,
        proto: Proto,
        trunk: Option<i64>,
        trunk_enabled: bool,
    ) -> CompiledEntry {
        let (ban, status) = match self.customers.get(customer as usize) {
            Some(row) => (row.ban.clone(), row.status),
            None => (Arc::from(""), CustomerStatus::Active),
        };
        CompiledEntry {
            ban,
            trunk,
            customer,
            port,
            proto,
            status,
            trunk_enabled,
        }
    }

    fn finish<T: LpmTable<PrefixSlot>>(mut self) -> Result<Snapshot<T>, AclError> {
        let rules = self.rules;
        let mut counts = Counts::default();

        // Entries of this group, validated and staged.
        let mut staged4: Vec<Staged> = Vec::with_capacity(rules.entries.len());
        let mut staged6: Vec<Staged> = Vec::new();
        for (position, entry) in rules.entries.iter().enumerate() {
            if entry.group == 0 {
                return Err(AclError::EntryGroupZero {
                    origin: entry.origin.to_string(),
                });
            }
            if entry.group != self.group {
                counts.skipped_other_group += 1;
                continue;
            }
            let (trunk, trunk_enabled, customer) = match entry.trunk_group {
                None => (None, true, self.customer(&entry.ban)),
                Some(id) => {
                    let Some(&trunk) = self.trunks.get(&id) else {
                        return Err(AclError::UnknownTrunkGroup {
                            origin: entry.origin.to_string(),
                            trunk_group: id,
                        });
                    };
                    let checked = self.trunk_customers.get(&id).copied();
                    let ban: *const u8 = Arc::as_ptr(&entry.ban).cast();
                    let shared = checked.is_some_and(|(_, checked)| checked == ban);
                    if !shared && *trunk.ban != *entry.ban {
                        return Err(AclError::TrunkGroupCustomerMismatch {
                            origin: entry.origin.to_string(),
                            trunk_group: id,
                            trunk_ban: trunk.ban.clone(),
                            ban: entry.ban.to_string(),
                        });
                    }
                    let customer = match checked {
                        Some((customer, _)) => customer,
                        None => {
                            let customer = self.customer(&entry.ban);
                            self.trunk_customers.insert(id, (customer, ban));
                            customer
                        }
                    };
                    (Some(id), trunk.enabled, customer)
                }
            };
            let net = canonical_net(entry.network);
            let (staged, bits) = match net {
                IpNet::V4(v4) => (&mut staged4, u128::from(u32::from(v4.network()))),
                IpNet::V6(v6) => (&mut staged6, u128::from(v6.network())),
            };
            staged.push(Staged {
                key: sort_key(
                    bits,
                    net.prefix_len(),
                    entry.port == 0,
                    entry.proto == Proto::Any,
                    position as u32,
                ),
                net,
                customer,
                trunk,
                trunk_enabled,
                port: entry.port,
                proto: entry.proto,
            });
        }
        staged4.sort_unstable_by_key(|s| s.key);
        staged6.sort_unstable_by_key(|s| s.key);
        let staged = staged4.len() + staged6.len();

        // Group entries by prefix; find each prefix's parent with a stack (containing prefixes
        // sort before the prefixes they contain).
        let mut nodes: Vec<PrefixSlot> = Vec::new();
        let mut networks: Vec<IpNet> = Vec::new();
        let mut entries = Vec::with_capacity(staged);
        let mut positions = Vec::with_capacity(staged);
        let mut stack: Vec<u32> = Vec::new();
        for item in staged4.iter().chain(&staged6) {
            let index = entries.len() as u32;
            entries.push(self.compiled(
                item.customer,
                item.port,
                item.proto,
                item.trunk,
                item.trunk_enabled,
            ));
            positions.push(item.key.1 as u32);
            match item.net {
                IpNet::V4(_) => counts.v4_entries += 1,
                IpNet::V6(_) => counts.v6_entries += 1,
            }
            if networks.last() == Some(&item.net) {
                if let Some(node) = nodes.last_mut() {
                    node.end = index + 1;
                }
                continue;
            }
            let node_index = nodes.len() as u32;
            while let Some(&top) = stack.last() {
                match networks.get(top as usize) {
                    Some(outer) if outer.contains(&item.net) => break,
                    _ => {
                        stack.pop();
                    }
                }
            }
            nodes.push(PrefixSlot {
                index: node_index,
                start: index,
                end: index + 1,
                parent: stack.last().copied().unwrap_or(NO_PARENT),
            });
            networks.push(item.net);
            stack.push(node_index);
        }
        let mut table4: Vec<(Ipv4Net, PrefixSlot)> = Vec::new();
        let mut table6: Vec<(Ipv6Net, PrefixSlot)> = Vec::new();
        for (slot, net) in nodes.iter().zip(networks.iter().copied()) {
            match net {
                IpNet::V4(v4) => table4.push((v4, *slot)),
                IpNet::V6(v6) => table6.push((v6, *slot)),
            }
        }

        // Dedicated ingress IPs: one customer each.
        let mut dedicated: Vec<DedicatedRow> = Vec::with_capacity(rules.dedicated_ips.len());
        let mut claimed: HashMap<IpAddr, usize> = HashMap::new();
        for (position, row) in rules.dedicated_ips.iter().enumerate() {
            let ip = row.ip.to_canonical();
            match claimed.entry(ip) {
                MapEntry::Occupied(seen) => {
                    let Some(first) = rules.dedicated_ips.get(*seen.get()) else {
                        continue;
                    };
                    if first.ban != row.ban {
                        return Err(AclError::DedicatedIpConflict {
                            ip,
                            first_ban: first.ban.clone(),
                            first_origin: first.origin.clone(),
                            second_ban: row.ban.clone(),
                            second_origin: row.origin.clone(),
                        });
                    }
                }
                MapEntry::Vacant(slot) => {
                    slot.insert(position);
                    let customer = self.customer(&row.ban);
                    dedicated.push(DedicatedRow {
                        ip,
                        customer,
                        origin: row.origin.clone(),
                    });
                }
            }
        }
        dedicated.sort_unstable_by_key(|row| row.ip);

        counts.dedicated_ips = dedicated.len();
        counts.customers = self.customers.len();
        counts.trunk_groups = self.trunks.len();
        Ok(Snapshot {
            group: self.group,
            table: T::build(&table4, &table6),
            nodes,
            networks,
            entries,
            positions,
            rules: Arc::default(),
            customers: self.customers,
            dedicated,
            counts,
            trunk_routes: HashMap::new(),
        })
    }
}

// === explain ===

/// A decision with the rules behind it. `Display` renders the `warp-edge acl explain` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation<'a> {
    pub request: AclRequest,
    /// Always what [`Snapshot::decide`] returns for the same request.
    pub decision: Decision<'a>,
    /// The rule that decided, if any (a deny for suspension or a disabled trunk has one too).
    pub matched: Option<MatchedRule<'a>>,
    /// The prefixes containing the source, most specific first, up to the winning one. Empty
    /// when a dedicated IP decided (the source ACL is not consulted then).
    pub considered: Vec<ConsideredPrefix<'a>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchedRule<'a> {
    Entry(RuleView<'a>),
    Dedicated(DedicatedView<'a>),
}

/// One source ACL entry as compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleView<'a> {
    pub origin: &'a str,
    pub network: IpNet,
    pub port: u16,
    pub proto: Proto,
    pub ban: &'a str,
    pub customer_status: CustomerStatus,
    /// False when the customer is implied by the entry (no customer row in the source).
    pub customer_listed: bool,
    pub trunk_group: Option<i64>,
    pub trunk_enabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedicatedView<'a> {
    pub origin: &'a str,
    pub ip: IpAddr,
    pub ban: &'a str,
    pub status: CustomerStatus,
}

/// A prefix containing the source, with each of its entries and what it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsideredPrefix<'a> {
    pub network: IpNet,
    pub rules: Vec<(RuleView<'a>, Verdict)>,
}

/// What one entry said about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admits,
    PortMismatch,
    TransportMismatch,
}

fn status_str(status: CustomerStatus) -> &'static str {
    match status {
        CustomerStatus::Active => "active",
        CustomerStatus::Suspended => "suspended",
        CustomerStatus::Closed => "closed",
    }
}

impl fmt::Display for RuleView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.origin, self.network)?;
        match self.port {
            0 => f.write_str(" port any")?,
            port => write!(f, " port {port}")?,
        }
        write!(f, " proto {} ban {}", self.proto, self.ban)?;
        if !self.customer_listed {
            f.write_str(" (no customer row: active)")?;
        } else if self.customer_status != CustomerStatus::Active {
            write!(f, " ({})", status_str(self.customer_status))?;
        }
        match self.trunk_group {
            Some(trunk) if self.trunk_enabled => write!(f, " trunk group {trunk}"),
            Some(trunk) => write!(f, " trunk group {trunk} (disabled)"),
            None => f.write_str(" no trunk group"),
        }
    }
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let req = &self.request;
        writeln!(f, "{}", self.decision)?;
        writeln!(
            f,
            "request: from {} over {} to {}",
            req.source, req.transport, req.local
        )?;
        match &self.matched {
            Some(MatchedRule::Dedicated(view)) => {
                writeln!(
                    f,
                    "rule: {}: dedicated ip {} of customer {} ({})",
                    view.origin,
                    view.ip,
                    view.ban,
                    status_str(view.status)
                )?;
                return writeln!(
                    f,
                    "the source acl was not consulted: a dedicated ip takes precedence"
                );
            }
            Some(MatchedRule::Entry(view)) => writeln!(f, "rule: {view}")?,
            None => writeln!(f, "rule: none")?,
        }
        if self.considered.is_empty() {
            return writeln!(
                f,
                "no prefix contains {} and {} is not a dedicated ip",
                req.source.ip(),
                req.local
            );
        }
        writeln!(f, "prefixes containing the source, most specific first:")?;
        for prefix in &self.considered {
            writeln!(f, "  {}", prefix.network)?;
            for (rule, verdict) in &prefix.rules {
                let verdict = match verdict {
                    Verdict::Admits => "admits".to_owned(),
                    Verdict::PortMismatch => {
                        format!("port {} is not {}", rule.port, req.source.port())
                    }
                    Verdict::TransportMismatch => {
                        format!("proto {} does not admit {}", rule.proto, req.transport)
                    }
                };
                writeln!(f, "    {rule}: {verdict}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::acl::rules::{AclEntry, AuthType, DedicatedIp};
    use crate::acl::table::PrefixTrieLpm;

    type Trie = PrefixTrieLpm<PrefixSlot>;

    // --- builders ---

    fn entry(network: &str, port: u16, proto: Proto, ban: &str) -> AclEntry {
        AclEntry {
            origin: format!("test {network} {port} {proto} {ban}").into(),
            group: 1,
            network: network.parse().unwrap(),
            port,
            proto,
            ban: ban.into(),
            trunk_group: None,
        }
    }

    fn trunked(mut e: AclEntry, trunk: i64) -> AclEntry {
        e.trunk_group = Some(trunk);
        e
    }

    fn customer(ban: &str, status: CustomerStatus) -> Customer {
        Customer {
            ban: ban.to_owned(),
            name: format!("customer {ban}"),
            status,
        }
    }

    fn trunk(id: i64, ban: &str, enabled: bool) -> TrunkGroup {
        TrunkGroup {
            id,
            ban: ban.to_owned(),
            name: format!("trunk {id}"),
            auth_type: AuthType::IpAcl,
            max_cps: None,
            max_concurrent_calls: None,
            route: None,
            enabled,
        }
    }

    fn dedicated(ip: &str, ban: &str) -> DedicatedIp {
        DedicatedIp {
            origin: format!("test dedicated {ip}"),
            ip: ip.parse().unwrap(),
            ban: ban.to_owned(),
        }
    }

    fn entries(list: Vec<AclEntry>) -> RuleSet {
        RuleSet {
            entries: list,
            ..RuleSet::default()
        }
    }

    const SHARED: &str = "198.51.100.1";

    fn req(source: &str, transport: Proto) -> AclRequest {
        req_to(source, SHARED, transport)
    }

    fn req_to(source: &str, local: &str, transport: Proto) -> AclRequest {
        AclRequest {
            source: source.parse().unwrap(),
            local: local.parse().unwrap(),
            transport,
        }
    }

    fn allow(customer: &str, trunk: Option<i64>) -> Decision<'_> {
        Decision::Allow {
            customer,
            trunk,
            via: MatchedBy::SourceIp,
        }
    }

    fn deny(reason: DenyReason) -> Decision<'static> {
        Decision::Deny {
            reason,
            customer: None,
        }
    }

    /// A refusal of a recognised customer.
    fn refuse(reason: DenyReason, customer: &str) -> Decision<'_> {
        Decision::Deny {
            reason,
            customer: Some(customer),
        }
    }

    fn build(rules: &RuleSet) -> Snapshot {
        Snapshot::build(Arc::new(rules.clone()), 1).unwrap()
    }

    // --- longest prefix ---

    #[test]
    fn host_beats_subnet_in_either_order() {
        for flip in [false, true] {
            let mut list = vec![
                entry("10.0.0.0/24", 0, Proto::Any, "subnet"),
                entry("10.0.0.5/32", 0, Proto::Any, "host"),
            ];
            if flip {
                list.reverse();
            }
            let snap = build(&entries(list));
            assert_eq!(
                snap.decide(&req("10.0.0.5:5060", Proto::Udp)),
                allow("host", None)
            );
            assert_eq!(
                snap.decide(&req("10.0.0.6:5060", Proto::Udp)),
                allow("subnet", None)
            );
            assert_eq!(
                snap.decide(&req("10.0.1.5:5060", Proto::Udp)),
                deny(DenyReason::UnknownSource)
            );
        }
    }

    #[test]
    fn slash_28_inside_a_slash_24() {
        let snap = build(&entries(vec![
            entry("10.0.0.0/24", 0, Proto::Any, "wide"),
            entry("10.0.0.16/28", 0, Proto::Any, "narrow"),
        ]));
        for host in [16, 20, 31] {
            let source = format!("10.0.0.{host}:5060");
            assert_eq!(
                snap.decide(&req(&source, Proto::Udp)),
                allow("narrow", None)
            );
        }
        for host in [0, 15, 32, 255] {
            let source = format!("10.0.0.{host}:5060");
            assert_eq!(snap.decide(&req(&source, Proto::Udp)), allow("wide", None));
        }
    }

    #[test]
    fn host_bits_in_a_network_are_masked() {
        let snap = build(&entries(vec![entry("10.0.0.7/24", 0, Proto::Any, "a")]));
        assert_eq!(
            snap.decide(&req("10.0.0.200:5060", Proto::Udp)),
            allow("a", None)
        );
    }

    // --- ports and protos ---

    #[test]
    fn port_restricted_entry() {
        let snap = build(&entries(vec![entry("10.0.0.5/32", 5060, Proto::Any, "a")]));
        assert_eq!(
            snap.decide(&req("10.0.0.5:5060", Proto::Udp)),
            allow("a", None)
        );
        assert_eq!(
            snap.decide(&req("10.0.0.5:5080", Proto::Udp)),
            deny(DenyReason::UnknownSource)
        );
    }

    #[test]
    fn port_zero_matches_any_port() {
        let snap = build(&entries(vec![entry("10.0.0.5/32", 0, Proto::Any, "a")]));
        for port in [1, 5060, 65535] {
            let source = format!("10.0.0.5:{port}");
            assert_eq!(snap.decide(&req(&source, Proto::Tcp)), allow("a", None));
        }
    }

    #[test]
    fn proto_restricted_host_falls_back_to_covering_subnet() {
        let snap = build(&entries(vec![
            entry("10.0.0.5/32", 0, Proto::Tcp, "host-tcp"),
            entry("10.0.0.0/24", 0, Proto::Udp, "subnet-udp"),
        ]));
        assert_eq!(
            snap.decide(&req("10.0.0.5:5060", Proto::Tcp)),
            allow("host-tcp", None)
        );
        assert_eq!(
            snap.decide(&req("10.0.0.5:5060", Proto::Udp)),
            allow("subnet-udp", None)
        );
        assert_eq!(
            snap.decide(&req("10.0.0.5:5061", Proto::Tls)),
            deny(DenyReason::TransportNotAllowed)
        );
    }

    #[test]
    fn proto_any_admits_every_transport() {
        let snap = build(&entries(vec![entry("10.0.0.5/32", 0, Proto::Any, "a")]));
        for transport in [Proto::Udp, Proto::Tcp, Proto::Tls] {
            assert_eq!(
                snap.decide(&req("10.0.0.5:5060", transport)),
                allow("a", None)
            );
        }
    }

    #[test]
    fn several_rows_on_one_prefix() {
        let snap = build(&entries(vec![
            entry("10.0.0.0/24", 0, Proto::Any, "any-any"),
            entry("10.0.0.0/24", 0, Proto::Udp, "any-udp"),
            entry("10.0.0.0/24", 5060, Proto::Any, "5060-any"),
            entry("10.0.0.0/24", 5060, Proto::Tcp, "5060-tcp"),
            entry("10.0.0.0/24", 5060, Proto::Tcp, "5060-tcp-later"),
        ]));
        // An exact port beats port 0, then an exact proto beats any, then the earlier row.
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Tcp)),
            allow("5060-tcp", None)
        );
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            allow("5060-any", None)
        );
        assert_eq!(
            snap.decide(&req("10.0.0.1:5080", Proto::Udp)),
            allow("any-udp", None)
        );
        assert_eq!(
            snap.decide(&req("10.0.0.1:5080", Proto::Tls)),
            allow("any-any", None)
        );
        assert_eq!(snap.counts().v4_entries, 5);
    }

    #[test]
    fn exact_port_beats_exact_proto() {
        let snap = build(&entries(vec![
            entry("10.0.0.0/24", 0, Proto::Udp, "proto"),
            entry("10.0.0.0/24", 5060, Proto::Any, "port"),
        ]));
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            allow("port", None)
        );
    }

    #[test]
    fn transport_not_allowed_versus_unknown_source() {
        let snap = build(&entries(vec![
            entry("10.0.0.0/24", 0, Proto::Tcp, "tcp-only"),
            entry("10.0.1.0/24", 5060, Proto::Tcp, "tcp-5060"),
        ]));
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            deny(DenyReason::TransportNotAllowed)
        );
        // The only entry wants another port: the source is not known on this port at all.
        assert_eq!(
            snap.decide(&req("10.0.1.1:5080", Proto::Udp)),
            deny(DenyReason::UnknownSource)
        );
        assert_eq!(
            snap.decide(&req("10.0.1.1:5060", Proto::Udp)),
            deny(DenyReason::TransportNotAllowed)
        );
        assert_eq!(
            snap.decide(&req("10.9.0.1:5060", Proto::Udp)),
            deny(DenyReason::UnknownSource)
        );
    }

    // --- IPv6 ---

    #[test]
    fn ipv6_longest_prefix() {
        let snap = build(&entries(vec![
            entry("2001:db8::/32", 0, Proto::Any, "wide"),
            entry("2001:db8:0:1::/64", 0, Proto::Any, "narrow"),
            entry("2001:db8:0:1::5/128", 0, Proto::Tcp, "host-tcp"),
        ]));
        assert_eq!(
            snap.decide(&req("[2001:db8:0:1::5]:5060", Proto::Tcp)),
            allow("host-tcp", None)
        );
        assert_eq!(
            snap.decide(&req("[2001:db8:0:1::5]:5060", Proto::Udp)),
            allow("narrow", None)
        );
        assert_eq!(
            snap.decide(&req("[2001:db8:ff::1]:5060", Proto::Udp)),
            allow("wide", None)
        );
        assert_eq!(
            snap.decide(&req("[2001:db9::1]:5060", Proto::Udp)),
            deny(DenyReason::UnknownSource)
        );
        let counts = snap.counts();
        assert_eq!((counts.v4_entries, counts.v6_entries), (0, 3));
    }

    #[test]
    fn ipv4_mapped_networks_and_sources_are_ipv4() {
        let snap = build(&entries(vec![
            entry("::ffff:10.0.0.0/120", 0, Proto::Any, "mapped-net"),
            entry("10.0.1.5/32", 0, Proto::Any, "plain-host"),
        ]));
        let counts = snap.counts();
        assert_eq!((counts.v4_entries, counts.v6_entries), (2, 0));
        assert_eq!(
            snap.decide(&req("10.0.0.9:5060", Proto::Udp)),
            allow("mapped-net", None)
        );
        assert_eq!(
            snap.decide(&req("[::ffff:10.0.0.9]:5060", Proto::Udp)),
            allow("mapped-net", None)
        );
        assert_eq!(
            snap.decide(&req("[::ffff:10.0.1.5]:5060", Proto::Udp)),
            allow("plain-host", None)
        );
        assert_eq!(
            canonical_net("::ffff:192.0.2.1/128".parse().unwrap()),
            "192.0.2.1/32".parse::<IpNet>().unwrap()
        );
        // Shorter than /96 is not inside the mapped range: it stays IPv6.
        assert_eq!(
            canonical_net("::ffff:0:0/95".parse().unwrap()),
            "::fffe:0:0/95".parse::<IpNet>().unwrap()
        );
    }

    // --- dedicated IPs and statuses ---

    #[test]
    fn dedicated_ip_takes_precedence_over_source() {
        let mut rules = entries(vec![entry("10.0.0.0/24", 0, Proto::Tcp, "by-source")]);
        rules.dedicated_ips = vec![dedicated("203.0.113.10", "premium")];
        let snap = build(&rules);
        let via_dedicated = Decision::Allow {
            customer: "premium",
            trunk: None,
            via: MatchedBy::DedicatedIp,
        };
        assert_eq!(
            snap.decide(&req_to("10.0.0.1:5060", "203.0.113.10", Proto::Tcp)),
            via_dedicated
        );
        // Any source, any transport, over the dedicated IP (IPv4-mapped too).
        assert_eq!(
            snap.decide(&req_to("192.0.2.1:5060", "::ffff:203.0.113.10", Proto::Udp)),
            via_dedicated
        );
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Tcp)),
            allow("by-source", None)
        );
        assert_eq!(snap.counts().dedicated_ips, 1);
        assert_eq!(MatchedBy::DedicatedIp.as_str(), "dedicated_ip");
        assert_eq!(MatchedBy::SourceIp.as_str(), "source_ip");
    }

    #[test]
    fn ipv6_dedicated_ip() {
        let rules = RuleSet {
            dedicated_ips: vec![dedicated("2001:db8::10", "premium6")],
            ..RuleSet::default()
        };
        let snap = build(&rules);
        assert_eq!(
            snap.decide(&req_to("[2001:db8:9::1]:5060", "2001:db8::10", Proto::Tls)),
            Decision::Allow {
                customer: "premium6",
                trunk: None,
                via: MatchedBy::DedicatedIp,
            }
        );
        assert_eq!(
            snap.decide(&req_to("[2001:db8:9::1]:5060", "2001:db8::11", Proto::Tls)),
            deny(DenyReason::UnknownSource)
        );
    }

    #[test]
    fn snapshots_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Snapshot>();
    }

    #[test]
    fn suspended_and_closed_customers_are_denied_both_ways() {
        for status in [CustomerStatus::Suspended, CustomerStatus::Closed] {
            let mut rules = entries(vec![
                entry("10.0.0.0/24", 0, Proto::Any, "bad"),
                entry("10.0.1.0/24", 0, Proto::Any, "good"),
            ]);
            rules.customers = vec![
                customer("bad", status),
                customer("good", CustomerStatus::Active),
            ];
            rules.dedicated_ips = vec![
                dedicated("203.0.113.10", "bad"),
                dedicated("203.0.113.11", "good"),
            ];
            let snap = build(&rules);
            assert_eq!(
                snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
                refuse(DenyReason::CustomerSuspended, "bad")
            );
            assert_eq!(
                snap.decide(&req_to("10.0.1.1:5060", "203.0.113.10", Proto::Udp)),
                refuse(DenyReason::CustomerSuspended, "bad")
            );
            assert_eq!(
                snap.decide(&req("10.0.1.1:5060", Proto::Udp)),
                allow("good", None)
            );
        }
    }

    #[test]
    fn suspended_winner_does_not_fall_back() {
        let mut rules = entries(vec![
            entry("10.0.0.5/32", 0, Proto::Any, "bad"),
            entry("10.0.0.0/24", 0, Proto::Any, "good"),
        ]);
        rules.customers = vec![
            customer("bad", CustomerStatus::Suspended),
            customer("good", CustomerStatus::Active),
        ];
        let snap = build(&rules);
        assert_eq!(
            snap.decide(&req("10.0.0.5:5060", Proto::Udp)),
            refuse(DenyReason::CustomerSuspended, "bad")
        );
    }

    #[test]
    fn disabled_trunk_group() {
        let mut rules = entries(vec![
            trunked(entry("10.0.0.0/24", 0, Proto::Any, "a"), 7),
            trunked(entry("10.0.1.0/24", 0, Proto::Any, "a"), 8),
        ]);
        rules.trunk_groups = vec![trunk(7, "a", false), trunk(8, "a", true)];
        let snap = build(&rules);
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            refuse(DenyReason::TrunkDisabled, "a")
        );
        assert_eq!(
            snap.decide(&req("10.0.1.1:5060", Proto::Udp)),
            allow("a", Some(8))
        );
    }

    #[test]
    fn customer_status_is_checked_before_the_trunk() {
        let mut rules = entries(vec![trunked(entry("10.0.0.0/24", 0, Proto::Any, "a"), 7)]);
        rules.trunk_groups = vec![trunk(7, "a", false)];
        rules.customers = vec![customer("a", CustomerStatus::Closed)];
        assert_eq!(
            build(&rules).decide(&req("10.0.0.1:5060", Proto::Udp)),
            refuse(DenyReason::CustomerSuspended, "a")
        );
    }

    #[test]
    fn entries_without_a_customer_row_are_active() {
        let mut rules = entries(vec![entry("10.0.0.0/24", 0, Proto::Any, "unlisted")]);
        rules.customers = vec![customer("listed", CustomerStatus::Active)];
        let snap = build(&rules);
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            allow("unlisted", None)
        );
        assert_eq!(snap.counts().customers, 2);
    }

    #[test]
    fn deny_reason_labels() {
        let labels: Vec<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "unknown_source",
                "customer_suspended",
                "trunk_disabled",
                "transport_not_allowed"
            ]
        );
    }

    // --- groups and build errors ---

    #[test]
    fn only_the_edges_group_is_used_and_the_rest_is_counted() {
        let mut other = entry("10.0.0.0/24", 0, Proto::Any, "group2");
        other.group = 2;
        let rules = entries(vec![other, entry("10.0.1.0/24", 0, Proto::Any, "group1")]);
        let snap = build(&rules);
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            deny(DenyReason::UnknownSource)
        );
        assert_eq!(
            snap.decide(&req("10.0.1.1:5060", Proto::Udp)),
            allow("group1", None)
        );
        assert_eq!(snap.counts().skipped_other_group, 1);
        assert_eq!(snap.counts().v4_entries, 1);

        let snap2 = Snapshot::build(Arc::new(rules.clone()), 2).unwrap();
        assert_eq!(snap2.group(), 2);
        assert_eq!(
            snap2.decide(&req("10.0.0.1:5060", Proto::Udp)),
            allow("group2", None)
        );
    }

    #[test]
    fn group_zero_is_an_error() {
        assert_eq!(
            Snapshot::build(Arc::default(), 0).unwrap_err(),
            AclError::GroupZero
        );
        let mut zero = entry("10.0.0.0/24", 0, Proto::Any, "a");
        zero.group = 0;
        let origin = zero.origin.to_string();
        assert_eq!(
            Snapshot::build(Arc::new(entries(vec![zero])), 1).unwrap_err(),
            AclError::EntryGroupZero { origin }
        );
    }

    #[test]
    fn unknown_trunk_group_is_an_error() {
        let e = trunked(entry("10.0.0.0/24", 0, Proto::Any, "a"), 9);
        let origin = e.origin.to_string();
        assert_eq!(
            Snapshot::build(Arc::new(entries(vec![e])), 1).unwrap_err(),
            AclError::UnknownTrunkGroup {
                origin,
                trunk_group: 9
            }
        );
    }

    #[test]
    fn trunk_group_of_another_customer_is_an_error() {
        let mut rules = entries(vec![trunked(entry("10.0.0.0/24", 0, Proto::Any, "a"), 9)]);
        rules.trunk_groups = vec![trunk(9, "b", true)];
        assert!(matches!(
            Snapshot::build(Arc::new(rules.clone()), 1).unwrap_err(),
            AclError::TrunkGroupCustomerMismatch { trunk_group: 9, .. }
        ));
    }

    #[test]
    fn trunk_group_of_unknown_customer_is_an_error_only_with_customers() {
        let mut rules = RuleSet {
            trunk_groups: vec![trunk(9, "ghost", true)],
            ..RuleSet::default()
        };
        assert!(Snapshot::build(Arc::new(rules.clone()), 1).is_ok());
        rules.customers = vec![customer("real", CustomerStatus::Active)];
        assert_eq!(
            Snapshot::build(Arc::new(rules.clone()), 1).unwrap_err(),
            AclError::UnknownCustomer {
                trunk_group: 9,
                ban: "ghost".to_owned()
            }
        );
    }

    #[test]
    fn dedicated_ip_claimed_twice() {
        let mut rules = RuleSet {
            dedicated_ips: vec![
                dedicated("203.0.113.10", "a"),
                dedicated("203.0.113.10", "a"),
            ],
            ..RuleSet::default()
        };
        assert_eq!(build(&rules).counts().dedicated_ips, 1);
        // The same address written as IPv4-mapped IPv6 is the same IP.
        rules
            .dedicated_ips
            .push(dedicated("::ffff:203.0.113.10", "b"));
        assert!(matches!(
            Snapshot::build(Arc::new(rules.clone()), 1).unwrap_err(),
            AclError::DedicatedIpConflict { ip, .. } if ip == IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))
        ));
    }

    #[test]
    fn duplicate_customers_and_trunk_groups() {
        let same = RuleSet {
            customers: vec![
                customer("a", CustomerStatus::Active),
                customer("a", CustomerStatus::Active),
            ],
            trunk_groups: vec![trunk(1, "a", true), trunk(1, "a", true)],
            ..RuleSet::default()
        };
        let counts = build(&same).counts();
        assert_eq!((counts.customers, counts.trunk_groups), (1, 1));

        let mut differ = same.clone();
        differ.customers[1].status = CustomerStatus::Suspended;
        assert_eq!(
            Snapshot::build(Arc::new(differ.clone()), 1).unwrap_err(),
            AclError::DuplicateCustomer {
                ban: "a".to_owned()
            }
        );
        let mut differ = same;
        differ.trunk_groups[1].enabled = false;
        assert_eq!(
            Snapshot::build(Arc::new(differ.clone()), 1).unwrap_err(),
            AclError::DuplicateTrunkGroup { trunk_group: 1 }
        );
    }

    #[test]
    fn empty_snapshot_denies_everything() {
        let snap = Snapshot::empty();
        assert_eq!(
            snap.decide(&req("10.0.0.1:5060", Proto::Udp)),
            deny(DenyReason::UnknownSource)
        );
        assert_eq!(snap.counts(), Counts::default());
    }

    // --- explain ---

    #[test]
    fn explain_names_the_rule_and_the_prefixes_considered() {
        let mut rules = entries(vec![
            trunked(entry("10.0.0.5/32", 0, Proto::Tcp, "a"), 7),
            trunked(entry("10.0.0.0/24", 5060, Proto::Udp, "a"), 7),
            entry("10.0.0.0/16", 0, Proto::Any, "b"),
        ]);
        rules.trunk_groups = vec![trunk(7, "a", true)];
        let snap = build(&rules);

        let request = req("10.0.0.5:5060", Proto::Udp);
        let explained = snap.explain(&request);
        assert_eq!(explained.decision, snap.decide(&request));
        let Some(MatchedRule::Entry(rule)) = explained.matched else {
            panic!("no rule: {explained}");
        };
        assert_eq!(rule.network, "10.0.0.0/24".parse::<IpNet>().unwrap());
        assert_eq!((rule.port, rule.proto, rule.ban), (5060, Proto::Udp, "a"));
        assert_eq!(rule.trunk_group, Some(7));
        assert_eq!(rule.origin, "test 10.0.0.0/24 5060 udp a");
        // Stops at the winning prefix: the /16 was not needed.
        let networks: Vec<String> = explained
            .considered
            .iter()
            .map(|p| p.network.to_string())
            .collect();
        assert_eq!(networks, ["10.0.0.5/32", "10.0.0.0/24"]);
        assert_eq!(
            explained.considered[0].rules[0].1,
            Verdict::TransportMismatch
        );
        let text = explained.to_string();
        eprintln!("{text}");
        assert!(text.starts_with("allow: customer a, trunk group 7, via source_ip\n"));
        assert!(text
            .contains("rule: test 10.0.0.0/24 5060 udp a: 10.0.0.0/24 port 5060 proto udp ban a"));
        assert!(text.contains("proto tcp does not admit udp"));

        // A miss lists every covering prefix and why each entry said no.
        let mut without_16 = rules;
        without_16.entries.pop();
        let snap = build(&without_16);
        let request = req("10.0.0.5:5080", Proto::Tls);
        let explained = snap.explain(&request);
        assert_eq!(explained.decision, deny(DenyReason::TransportNotAllowed));
        assert_eq!(explained.decision, snap.decide(&request));
        assert_eq!(explained.matched, None);
        let verdicts: Vec<(String, Verdict)> = explained
            .considered
            .iter()
            .flat_map(|p| p.rules.iter().map(|(r, v)| (r.network.to_string(), *v)))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("10.0.0.5/32".to_owned(), Verdict::TransportMismatch),
                ("10.0.0.0/24".to_owned(), Verdict::PortMismatch),
            ]
        );
        let text = explained.to_string();
        assert!(text.starts_with("deny: transport_not_allowed\n"), "{text}");
        eprintln!("{text}");
        assert!(text.contains("rule: none"), "{text}");
        assert!(text.contains("proto tcp does not admit tls"), "{text}");
        assert!(text.contains("port 5060 is not 5080"), "{text}");
    }

    #[test]
    fn explain_without_any_covering_prefix_and_for_dedicated() {
        let mut rules = entries(vec![entry("10.0.0.0/24", 0, Proto::Any, "a")]);
        rules.dedicated_ips = vec![dedicated("203.0.113.10", "p")];
        let snap = build(&rules);
        let explained = snap.explain(&req("192.0.2.1:5060", Proto::Udp));
        assert!(explained.considered.is_empty());
        let text = explained.to_string();
        assert!(text.starts_with("deny: unknown_source\n"), "{text}");
        assert!(text.contains("no prefix contains 192.0.2.1"), "{text}");

        let explained = snap.explain(&req_to("10.0.0.1:5060", "203.0.113.10", Proto::Udp));
        assert!(matches!(
            explained.matched,
            Some(MatchedRule::Dedicated(DedicatedView { ban: "p", .. }))
        ));
        assert!(explained.to_string().contains("dedicated ip 203.0.113.10"));
    }

    // --- differential: the snapshot against a linear scan ---

    /// xorshift64: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
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

    const PROTOS: [Proto; 4] = [Proto::Any, Proto::Udp, Proto::Tcp, Proto::Tls];
    const PORTS: [u16; 3] = [0, 5060, 5080];

    /// Random rules packed into a small address space so prefixes nest and collide.
    fn random_rules(rng: &mut Rng, count: usize) -> RuleSet {
        let bans = ["c0", "c1", "c2", "c3", "c4"];
        let statuses = [
            CustomerStatus::Active,
            CustomerStatus::Active,
            CustomerStatus::Active,
            CustomerStatus::Suspended,
            CustomerStatus::Closed,
        ];
        let mut rules = RuleSet {
            customers: bans[..4]
                .iter()
                .zip(statuses)
                .map(|(ban, status)| customer(ban, status))
                .collect(),
            trunk_groups: (0..10)
                .map(|id| trunk(id, bans[id as usize % 4], id % 5 != 2))
                .collect(),
            ..RuleSet::default()
        };
        for i in 0..count {
            let v6 = rng.below(4) == 0;
            let network: IpNet = if v6 {
                let len = 112 + rng.below(17) as u8;
                let addr = 0x2001_0db8_u128 << 96 | u128::from(rng.below(1 << 16) as u16);
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap())
            } else {
                let len = 18 + rng.below(15) as u8;
                let addr = 0x0a00_0000_u32 | (rng.below(1 << 16) as u32);
                let net = Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap();
                if rng.below(10) == 0 {
                    // Some written as IPv4-mapped IPv6.
                    let mapped = net.network().to_ipv6_mapped();
                    IpNet::V6(Ipv6Net::new(mapped, len + 96).unwrap())
                } else {
                    IpNet::V4(net)
                }
            };
            let trunk_id = rng.below(12) as i64;
            let (ban, trunk_group) = if trunk_id < 10 {
                (bans[trunk_id as usize % 4], Some(trunk_id))
            } else {
                (bans[rng.below(5) as usize], None)
            };
            rules.entries.push(AclEntry {
                origin: format!("random[{i}]").into(),
                group: 1 + (rng.below(8) == 0) as u32,
                network,
                port: PORTS[rng.below(3) as usize],
                proto: PROTOS[rng.below(4) as usize],
                ban: ban.into(),
                trunk_group,
            });
        }
        for _ in 0..4 {
            let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(8) as u8));
            let ban = bans[rng.below(5) as usize];
            if !rules.dedicated_ips.iter().any(|d| d.ip == ip) {
                rules.dedicated_ips.push(DedicatedIp {
                    origin: format!("dedicated {ip}"),
                    ip,
                    ban: ban.to_owned(),
                });
            }
        }
        rules
    }

    fn random_request(rng: &mut Rng) -> AclRequest {
        let ip = match rng.below(8) {
            0 | 1 => IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(rng.below(1 << 16) as u16),
            )),
            2 => {
                IpAddr::V6(Ipv4Addr::from(0x0a00_0000 | rng.below(1 << 16) as u32).to_ipv6_mapped())
            }
            3 => IpAddr::V4(Ipv4Addr::from(rng.next() as u32)),
            _ => IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | rng.below(1 << 16) as u32)),
        };
        AclRequest {
            source: SocketAddr::new(ip, [5060, 5080, 40000][rng.below(3) as usize]),
            local: IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(12) as u8)),
            transport: PROTOS[1 + rng.below(3) as usize],
        }
    }

    /// The matching rules spelled out as a scan over every row.
    fn naive<'r>(rules: &'r RuleSet, req: &AclRequest) -> Decision<'r> {
        let status = |ban: &str| {
            rules
                .customers
                .iter()
                .find(|c| c.ban == ban)
                .map_or(CustomerStatus::Active, |c| c.status)
        };
        let local = req.local.to_canonical();
        if let Some(d) = rules
            .dedicated_ips
            .iter()
            .find(|d| d.ip.to_canonical() == local)
        {
            return if status(&d.ban) != CustomerStatus::Active {
                refuse(DenyReason::CustomerSuspended, &d.ban)
            } else {
                Decision::Allow {
                    customer: &d.ban,
                    trunk: None,
                    via: MatchedBy::DedicatedIp,
                }
            };
        }
        let source = req.source.ip().to_canonical();
        let mut best: Option<(usize, &AclEntry)> = None;
        let mut wrong_transport = false;
        for (position, e) in rules.entries.iter().enumerate() {
            let net = canonical_net(e.network);
            if e.group != 1 || !net.contains(&source) {
                continue;
            }
            if e.port != 0 && e.port != req.source.port() {
                continue;
            }
            if !e.proto.admits(req.transport) {
                wrong_transport = true;
                continue;
            }
            let key = |p: usize, e: &AclEntry| {
                (
                    std::cmp::Reverse(canonical_net(e.network).prefix_len()),
                    e.port == 0,
                    e.proto == Proto::Any,
                    p,
                )
            };
            if best.is_none_or(|(bp, be)| key(position, e) < key(bp, be)) {
                best = Some((position, e));
            }
        }
        let Some((_, e)) = best else {
            return deny(if wrong_transport {
                DenyReason::TransportNotAllowed
            } else {
                DenyReason::UnknownSource
            });
        };
        if status(&e.ban) != CustomerStatus::Active {
            return refuse(DenyReason::CustomerSuspended, &e.ban);
        }
        let enabled = e
            .trunk_group
            .is_none_or(|id| rules.trunk_groups.iter().any(|t| t.id == id && t.enabled));
        if !enabled {
            return refuse(DenyReason::TrunkDisabled, &e.ban);
        }
        Decision::Allow {
            customer: &e.ban,
            trunk: e.trunk_group,
            via: MatchedBy::SourceIp,
        }
    }

    fn differential<T: LpmTable<PrefixSlot>>(seed: u64) {
        let mut rng = Rng(seed);
        let mut seen = [0usize; 6];
        for round in 0..30 {
            let rules = random_rules(&mut rng, 20 + round * 20);
            let snap = Snapshot::<T>::build_with(Arc::new(rules.clone()), 1).unwrap();
            let counts = snap.counts();
            assert_eq!(
                counts.v4_entries + counts.v6_entries + counts.skipped_other_group,
                rules.entries.len()
            );
            for _ in 0..1000 {
                let request = random_request(&mut rng);
                let got = snap.decide(&request);
                assert_eq!(got, naive(&rules, &request), "{}: {request:?}", T::NAME);
                assert_eq!(snap.explain(&request).decision, got);
                let slot = match got {
                    Decision::Allow { via, .. } => via as usize,
                    Decision::Deny { reason, .. } => 2 + reason as usize,
                };
                seen[slot] += 1;
            }
        }
        // The generator reaches every outcome often, or the comparison proves little.
        assert!(seen.iter().all(|&n| n >= 100), "{seen:?}");
    }

    #[test]
    fn differential_against_linear_scan_prefix_trie() {
        differential::<Trie>(0x9e37_79b9_7f4a_7c15);
    }

    #[test]
    fn differential_against_linear_scan_second_seed() {
        differential::<Trie>(0x2545_f491_4f6c_dd1d);
    }
}
