//! What the store sources share to keep a mirror of their store: rows kept in key order (a
//! full load sorts into it, a delta merges into it, so both give the same sequence) and one
//! shared string per BAN.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use crate::acl::RuleSet;

/// A store source's copy of its store: its rules, with each entry's and dedicated IP's key
/// (row id, Redis key), kept in key order compared as text. A full load sorts into that
/// order and a delta merges into it, so an edge that applied a thousand deltas holds exactly
/// what a fresh edge loads, and ties between equally specific entries break the same way on
/// every replica.
#[derive(Debug, Default)]
pub struct Mirror {
    pub(crate) rules: RuleSet,
    pub(crate) entry_keys: Vec<Box<str>>,
    pub(crate) dedicated_keys: Vec<Box<str>>,
    pub(crate) bans: Bans,
}

impl Mirror {
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }
}

/// One shared `Arc<str>` per BAN: a customer's entries then point at one string, which
/// keeps the snapshot build's BAN checks on one hot cache line (and a pointer compare)
/// instead of 100k cold ones.
#[derive(Debug, Default)]
pub(crate) struct Bans(HashSet<Arc<str>>);

impl Bans {
    pub(crate) fn get(&mut self, ban: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(ban) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(ban);
        self.0.insert(shared.clone());
        shared
    }
}

/// Rows keyed by id, in id order.
pub(crate) fn by_id<V>(mut rows: Vec<(Box<str>, V)>) -> (Vec<Box<str>>, Vec<V>) {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().unzip()
}

/// Replaces the rows named in `changed` with `fresh`, the named rows that still exist (sorted
/// by id), keeping id order. A named row missing from `fresh` is gone (deleted or disabled).
/// Each named id is found by binary search; the rows between are moved in runs, never
/// compared.
pub(crate) fn merge<V>(
    ids: &mut Vec<Box<str>>,
    values: &mut Vec<V>,
    changed: &BTreeSet<String>,
    fresh: (Vec<Box<str>>, Vec<V>),
) {
    let cuts: Vec<(usize, bool)> = changed
        .iter()
        .map(
            |id| match ids.binary_search_by(|probe| (**probe).cmp(id.as_str())) {
                Ok(at) => (at, true),
                Err(at) => (at, false),
            },
        )
        .collect();
    let capacity = ids.len() + fresh.0.len();
    let mut old = std::mem::take(ids).into_iter().zip(std::mem::take(values));
    let mut fresh = fresh.0.into_iter().zip(fresh.1).peekable();
    ids.reserve(capacity);
    values.reserve(capacity);
    let mut push = |(id, value)| {
        ids.push(id);
        values.push(value);
    };
    let mut cursor = 0;
    for (named, (at, exists)) in changed.iter().zip(cuts) {
        old.by_ref().take(at - cursor).for_each(&mut push);
        cursor = at;
        if exists {
            old.next();
            cursor += 1;
        }
        if let Some(row) = fresh.next_if(|(id, _)| **id == **named) {
            push(row);
        }
    }
    old.for_each(&mut push);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn merge_replaces_removes_and_inserts_in_id_order() {
        let (mut ids, mut values) = by_id(
            ["b", "d", "f", "h"]
                .iter()
                .map(|id| (Box::<str>::from(*id), id.to_uppercase()))
                .collect(),
        );
        // d is updated, f is gone, a, e and z are new, x was named but never existed.
        let fresh = by_id(
            [("z", "Z"), ("d", "D2"), ("a", "A"), ("e", "E")]
                .iter()
                .map(|(id, v)| (Box::<str>::from(*id), (*v).to_owned()))
                .collect(),
        );
        merge(
            &mut ids,
            &mut values,
            &set(&["a", "d", "e", "f", "x", "z"]),
            fresh,
        );
        let ids: Vec<&str> = ids.iter().map(|s| &**s).collect();
        assert_eq!(ids, ["a", "b", "d", "e", "h", "z"]);
        assert_eq!(values, ["A", "B", "D2", "E", "H", "Z"]);
    }

    #[test]
    fn one_string_per_ban() {
        let mut bans = Bans::default();
        let a = bans.get("100001");
        let b = bans.get("100001");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*bans.get("100002"), "100002");
    }
}
