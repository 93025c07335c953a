//! Rendezvous (highest-random-weight) placement of work keys over the live nodes.
//!
//! Every node computes a weight for each (node, key) pair with a fixed, seedless 64-bit hash
//! (XXH64 over the node id, a separator byte and the key) and the key goes to the node with the
//! highest weight (ties, practically impossible, go to the smaller id). All nodes that see the
//! same live set agree without talking to each other, and a change of the live set moves only
//! the keys it must: a joining node takes exactly the keys it now wins (about 1/n of them) and a
//! leaving node's keys spread over the others, while every other key stays where it was.
//! Placement only says who *should* own a key; the lease (see [`crate::lease`]) says who does.
//! [`rebalance`] turns the difference into leases to acquire and leases to release.

use std::collections::HashSet;

use twox_hash::XxHash64;

/// The weight of `node` for `key`.
pub fn weight(node: &str, key: &str) -> u64 {
    let mut buf = Vec::with_capacity(node.len() + key.len() + 1);
    buf.extend_from_slice(node.as_bytes());
    buf.push(0xff); // never in UTF-8, so ("ab", "c") and ("a", "bc") differ
    buf.extend_from_slice(key.as_bytes());
    XxHash64::oneshot(0, &buf)
}

/// The node among `nodes` that should own `key`, or `None` if there are no nodes.
pub fn owner<'a, S: AsRef<str>>(key: &str, nodes: &'a [S]) -> Option<&'a str> {
    nodes
        .iter()
        .map(AsRef::as_ref)
        .max_by(|a, b| weight(a, key).cmp(&weight(b, key)).then_with(|| b.cmp(a)))
}

/// The keys among `keys` that `node` should own when `nodes` are live.
pub fn keys_owned_by<'k, S: AsRef<str>>(
    node: &str,
    nodes: &[S],
    keys: &'k [String],
) -> Vec<&'k str> {
    keys.iter()
        .filter(|k| owner(k, nodes) == Some(node))
        .map(String::as_str)
        .collect()
}

/// What one node should change so that it holds exactly the keys placement gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rebalance {
    /// Keys this node wins and does not hold: try to acquire their leases (a lease still held
    /// by the previous owner is taken once that owner releases it or it expires).
    pub acquire: Vec<String>,
    /// Keys this node holds but another live node wins (or that are no longer wanted): finish
    /// the work in hand and release their leases, so the winner can take them at once.
    pub release: Vec<String>,
}

/// The plan for `node` given the `live` nodes, all work `keys`, and the keys it `held`.
/// A node missing from `live` (its heartbeat is late) is given nothing and releases everything.
pub fn rebalance<S: AsRef<str>>(
    node: &str,
    live: &[S],
    keys: &[String],
    held: &[String],
) -> Rebalance {
    let wins = |k: &str| owner(k, live) == Some(node);
    let held_set: HashSet<&str> = held.iter().map(String::as_str).collect();
    let key_set: HashSet<&str> = keys.iter().map(String::as_str).collect();
    Rebalance {
        acquire: keys
            .iter()
            .filter(|k| wins(k) && !held_set.contains(k.as_str()))
            .cloned()
            .collect(),
        release: held
            .iter()
            .filter(|k| !key_set.contains(k.as_str()) || !wins(k))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("connector-{}/shard-{}", i % 37, i))
            .collect()
    }

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn every_key_has_one_owner_and_the_spread_is_even() {
        let (ks, ns) = (keys(10_000), nodes(5));
        let mut counts = [0usize; 5];
        for k in &ks {
            let o = owner(k, &ns).unwrap();
            counts[ns.iter().position(|n| n == o).unwrap()] += 1;
        }
        // 2,000 expected each; a fair hash stays well inside ±15%.
        for c in counts {
            assert!((1700..=2300).contains(&c), "uneven spread {counts:?}");
        }
        assert_eq!(owner::<String>("k", &[]), None);
    }

    #[test]
    fn adding_a_node_moves_only_the_keys_it_wins() {
        let ks = keys(10_000);
        let before = nodes(4);
        let mut after = before.clone();
        after.push("node-new".to_string());
        let mut moved = 0;
        for k in &ks {
            let (a, b) = (owner(k, &before).unwrap(), owner(k, &after).unwrap());
            if a != b {
                assert_eq!(b, "node-new", "key {k} moved between old nodes");
                moved += 1;
            }
        }
        // About 1/5 of the keys (2,000).
        assert!((1700..=2300).contains(&moved), "moved {moved}");
    }

    #[test]
    fn removing_a_node_moves_only_its_keys() {
        let ks = keys(10_000);
        let before = nodes(5);
        let after: Vec<String> = before.iter().filter(|n| *n != "node-2").cloned().collect();
        let mut moved = 0;
        for k in &ks {
            let (a, b) = (owner(k, &before).unwrap(), owner(k, &after).unwrap());
            if a != b {
                assert_eq!(a, "node-2", "key {k} of a surviving node moved");
                moved += 1;
            }
        }
        assert_eq!(moved, keys_owned_by("node-2", &before, &ks).len());
        assert!((1700..=2300).contains(&moved), "moved {moved}");
    }

    #[test]
    fn the_order_of_the_live_set_does_not_matter() {
        let ns = nodes(7);
        let mut rev = ns.clone();
        rev.reverse();
        for k in keys(1000) {
            assert_eq!(owner(&k, &ns), owner(&k, &rev));
        }
    }

    #[test]
    fn rebalance_hands_over_exactly_the_keys_a_joining_node_wins() {
        let ks = keys(2000);
        let old = nodes(3);
        let mut new = old.clone();
        new.push("node-new".to_string());
        let mut handed = 0;
        for n in &old {
            let held: Vec<String> = keys_owned_by(n, &old, &ks)
                .into_iter()
                .map(String::from)
                .collect();
            let plan = rebalance(n, &new, &ks, &held);
            assert!(
                plan.acquire.is_empty(),
                "{n} gains nothing when a node joins"
            );
            for k in &plan.release {
                assert_eq!(owner(k, &new), Some("node-new"));
            }
            handed += plan.release.len();
            // Once settled, nothing more to do.
            let now: Vec<String> = held
                .into_iter()
                .filter(|k| !plan.release.contains(k))
                .collect();
            assert_eq!(rebalance(n, &new, &ks, &now), Rebalance::default());
        }
        let joiner = rebalance("node-new", &new, &ks, &[]);
        assert_eq!(joiner.acquire.len(), handed);
        assert!(joiner.release.is_empty());
        // A node that dropped out of the live set releases everything it holds.
        let held = vec![ks[0].clone(), "gone-key".to_string()];
        let plan = rebalance("node-x", &new, &ks, &held);
        assert_eq!(plan.release, held);
    }
}
