//! Why a rule set cannot become a snapshot. A failed build keeps the old snapshot in place, so
//! each message names the offending row well enough to fix it at its source.

use std::net::IpAddr;

use super::rules::Ban;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    /// The edge's own group; Kamailio groups start at 1.
    #[error("acl group 0 is not valid (groups start at 1)")]
    GroupZero,
    /// Kamailio rejects `grp <= 0` rows at load; so do we, instead of skipping them.
    #[error("{origin}: group 0 is not valid (groups start at 1)")]
    EntryGroupZero { origin: String },
    #[error("{origin}: trunk group {trunk_group} is not defined")]
    UnknownTrunkGroup { origin: String, trunk_group: i64 },
    /// The entry's BAN and its trunk group's BAN differ: the caller could not be named.
    #[error("{origin}: trunk group {trunk_group} belongs to customer {trunk_ban}, not {ban}")]
    TrunkGroupCustomerMismatch {
        origin: String,
        trunk_group: i64,
        trunk_ban: Ban,
        ban: Ban,
    },
    /// Only raised when the source gives a customer table at all.
    #[error("trunk group {trunk_group} names customer {ban}, which is not defined")]
    UnknownCustomer { trunk_group: i64, ban: Ban },
    #[error("dedicated ip {ip} is claimed by customer {first_ban} ({first_origin}) and by customer {second_ban} ({second_origin})")]
    DedicatedIpConflict {
        ip: IpAddr,
        first_ban: Ban,
        first_origin: String,
        second_ban: Ban,
        second_origin: String,
    },
    /// The same BAN twice is fine (two sources agreeing); with different data it is not.
    #[error("customer {ban} is defined twice with different data")]
    DuplicateCustomer { ban: Ban },
    #[error("trunk group {trunk_group} is defined twice with different data")]
    DuplicateTrunkGroup { trunk_group: i64 },
    /// The snapshot indexes entries with `u32`.
    #[error("{count} acl entries are more than one snapshot can hold")]
    TooManyEntries { count: usize },
}
