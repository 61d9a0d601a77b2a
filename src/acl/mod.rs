//! The IP ACL: who is calling. Rules from every source ([`rules`]) are compiled into an
//! immutable [`Snapshot`] (longest-prefix-match tables plus dedicated ingress IPs), and [`Acl`]
//! holds the current one behind an [`ArcSwap`]. [`reload`] keeps it current from the trunks
//! file alone; [`sources`] from PostgreSQL, Redis and the file together (issue 5).
//!
//! This module owns the matching semantics (see [`snapshot`]) and the snapshot swap. It must
//! never do I/O, block or allocate in [`Snapshot::decide`], never let a reader see half a
//! table (a new snapshot is built whole off the hot path, then stored), and never drop a rule
//! silently: every entry lands in the table, fails the build, or is counted as another
//! group's.

pub mod reload;
pub mod rules;
pub mod snapshot;
pub mod sources;
pub mod table;

mod error;

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

pub use error::AclError;
pub use rules::{
    AclEntry, AuthType, Ban, Customer, CustomerStatus, DedicatedIp, Proto, RuleSet, TrunkGroup,
};
pub use snapshot::{
    AclRequest, ConsideredPrefix, Counts, Decision, DedicatedView, DenyReason, Explanation,
    MatchedBy, MatchedRule, PrefixSlot, RuleView, Snapshot, Verdict,
};
pub use table::{DefaultLpm, LpmTable, PrefixTrieLpm};

/// The current snapshot, swapped whole on reload. Readers never wait and never see a
/// partial table; a failed build simply never reaches [`Acl::store`].
#[derive(Debug)]
pub struct Acl {
    current: ArcSwap<Snapshot>,
}

impl Acl {
    pub fn new(snapshot: Snapshot) -> Acl {
        Acl {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot to decide one request with. Cheap (no reference count in the common
    /// case); do not hold it across an `.await`, so a reload can free the old table.
    #[inline]
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Makes `snapshot` current and returns the one it replaces; requests already holding
    /// the old one finish with it. Whoever drops the last reference frees the old table (at
    /// 100k entries, milliseconds of work): a reloader keeps the returned snapshot until its
    /// next swap, by when no request holds it, so that work stays off the request path.
    pub fn store(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(snapshot))
    }
}

impl Default for Acl {
    /// Denies everything until the first snapshot is stored.
    fn default() -> Acl {
        Acl::new(Snapshot::empty())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn store_swaps_the_snapshot_readers_load() {
        let acl = Acl::default();
        let request = AclRequest {
            source: SocketAddr::from(([10, 0, 0, 1], 5060)),
            local: [198, 51, 100, 1].into(),
            transport: Proto::Udp,
        };
        let before = acl.load();
        assert_eq!(
            before.decide(&request),
            Decision::Deny {
                reason: DenyReason::UnknownSource,
                customer: None,
            }
        );

        let rules = RuleSet {
            entries: vec![AclEntry {
                origin: "test".into(),
                group: 1,
                network: "10.0.0.0/24".parse().unwrap(),
                port: 0,
                proto: Proto::Any,
                ban: "1001".into(),
                trunk_group: None,
            }],
            ..RuleSet::default()
        };
        acl.store(Snapshot::build(Arc::new(rules.clone()), 1).unwrap());
        assert_eq!(
            acl.load().decide(&request),
            Decision::Allow {
                customer: "1001",
                trunk: None,
                via: MatchedBy::SourceIp
            }
        );
        // A reader that loaded before the swap keeps its whole, old snapshot.
        assert!(!before.decide(&request).is_allow());
    }
}
