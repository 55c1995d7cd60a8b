//! The reconcile diff: desired routes against the routes of ours found in the kernel, as a
//! pure function (table-driven tests below). The worker applies its output.

use std::collections::HashMap;

use ipnet::IpNet;

use super::{KernelRoute, RouteChange};

/// What it takes to turn `actual` into `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Replaces (new or changed routes) and deletes (stale routes), in that order.
    pub changes: Vec<RouteChange>,
    /// Routes already in the kernel exactly as desired.
    pub kept: usize,
    /// How many of `changes` are replaces.
    pub replaces: usize,
}

/// Routes are compared normalised (`KernelRoute::new`): same prefix, same set of next hops.
/// A prefix listed twice in `desired` takes its last entry.
pub fn diff(actual: &[KernelRoute], desired: &[KernelRoute]) -> Diff {
    let actual: HashMap<IpNet, KernelRoute> = actual
        .iter()
        .map(|r| (r.prefix, KernelRoute::new(r.prefix, r.nexthops.clone())))
        .collect();
    let mut wanted: HashMap<IpNet, KernelRoute> = HashMap::with_capacity(desired.len());
    for r in desired {
        let r = KernelRoute::new(r.prefix, r.nexthops.clone());
        wanted.insert(r.prefix, r);
    }
    let mut out = Diff::default();
    let mut replaces: Vec<&KernelRoute> = Vec::new();
    for (prefix, want) in &wanted {
        match actual.get(prefix) {
            Some(have) if have == want => out.kept += 1,
            _ => replaces.push(want),
        }
    }
    // Stable output order makes the batches (and the tests) deterministic.
    replaces.sort_by_key(|r| r.prefix);
    let mut deletes: Vec<IpNet> = actual
        .keys()
        .filter(|p| !wanted.contains_key(p))
        .copied()
        .collect();
    deletes.sort();
    out.replaces = replaces.len();
    out.changes = replaces
        .into_iter()
        .cloned()
        .map(RouteChange::Replace)
        .chain(deletes.into_iter().map(RouteChange::Delete))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(prefix: &str, nhs: &[&str]) -> KernelRoute {
        KernelRoute {
            prefix: prefix.parse().unwrap(),
            nexthops: nhs
                .iter()
                .map(|n| n.parse::<std::net::IpAddr>().unwrap().into())
                .collect(),
        }
    }

    fn rep(prefix: &str, nhs: &[&str]) -> RouteChange {
        RouteChange::Replace(KernelRoute::new(
            prefix.parse().unwrap(),
            nhs.iter()
                .map(|n| n.parse::<std::net::IpAddr>().unwrap())
                .collect(),
        ))
    }

    fn del(prefix: &str) -> RouteChange {
        RouteChange::Delete(prefix.parse().unwrap())
    }

    #[test]
    fn diff_table() {
        struct Case {
            name: &'static str,
            actual: Vec<KernelRoute>,
            desired: Vec<KernelRoute>,
            changes: Vec<RouteChange>,
            kept: usize,
        }
        let cases = [
            Case {
                name: "nothing anywhere",
                actual: vec![],
                desired: vec![],
                changes: vec![],
                kept: 0,
            },
            Case {
                name: "new routes are installed",
                actual: vec![],
                desired: vec![r("10.244.1.0/26", &["192.0.2.2"])],
                changes: vec![rep("10.244.1.0/26", &["192.0.2.2"])],
                kept: 0,
            },
            Case {
                name: "identical routes are kept",
                actual: vec![r("10.244.1.0/26", &["192.0.2.2"])],
                desired: vec![r("10.244.1.0/26", &["192.0.2.2"])],
                changes: vec![],
                kept: 1,
            },
            Case {
                name: "stale routes are deleted",
                actual: vec![
                    r("10.244.1.0/26", &["192.0.2.2"]),
                    r("10.244.2.0/26", &["192.0.2.3"]),
                ],
                desired: vec![r("10.244.1.0/26", &["192.0.2.2"])],
                changes: vec![del("10.244.2.0/26")],
                kept: 1,
            },
            Case {
                name: "a changed next hop is replaced",
                actual: vec![r("10.244.1.0/26", &["192.0.2.2"])],
                desired: vec![r("10.244.1.0/26", &["192.0.2.3"])],
                changes: vec![rep("10.244.1.0/26", &["192.0.2.3"])],
                kept: 0,
            },
            Case {
                name: "next hop order does not matter",
                actual: vec![r("10.244.1.0/26", &["192.0.2.3", "192.0.2.2"])],
                desired: vec![r("10.244.1.0/26", &["192.0.2.2", "192.0.2.3"])],
                changes: vec![],
                kept: 1,
            },
            Case {
                name: "growing an ECMP set is a replace",
                actual: vec![r("fd00:10:244::/64", &["fd00::2"])],
                desired: vec![r("fd00:10:244::/64", &["fd00::2", "fd00::3"])],
                changes: vec![rep("fd00:10:244::/64", &["fd00::2", "fd00::3"])],
                kept: 0,
            },
            Case {
                name: "host bits and duplicate next hops are normalised away",
                actual: vec![r("10.244.1.0/26", &["192.0.2.2"])],
                desired: vec![r("10.244.1.5/26", &["192.0.2.2", "192.0.2.2"])],
                changes: vec![],
                kept: 1,
            },
            Case {
                name: "the last desired entry for a prefix wins",
                actual: vec![],
                desired: vec![
                    r("10.244.1.0/26", &["192.0.2.2"]),
                    r("10.244.1.0/26", &["192.0.2.9"]),
                ],
                changes: vec![rep("10.244.1.0/26", &["192.0.2.9"])],
                kept: 0,
            },
            Case {
                name: "replaces come first, then deletes, each sorted",
                actual: vec![
                    r("10.244.9.0/26", &["192.0.2.2"]),
                    r("10.244.8.0/26", &["192.0.2.2"]),
                ],
                desired: vec![
                    r("10.244.3.0/26", &["192.0.2.2"]),
                    r("10.244.2.0/26", &["192.0.2.2"]),
                ],
                changes: vec![
                    rep("10.244.2.0/26", &["192.0.2.2"]),
                    rep("10.244.3.0/26", &["192.0.2.2"]),
                    del("10.244.8.0/26"),
                    del("10.244.9.0/26"),
                ],
                kept: 0,
            },
        ];
        for case in cases {
            let d = diff(&case.actual, &case.desired);
            assert_eq!(d.changes, case.changes, "{}", case.name);
            assert_eq!(d.kept, case.kept, "{}", case.name);
            let replaces = case
                .changes
                .iter()
                .filter(|c| matches!(c, RouteChange::Replace(_)))
                .count();
            assert_eq!(d.replaces, replaces, "{}", case.name);
        }
    }
}
