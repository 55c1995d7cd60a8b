//! Workload interfaces (`tw*` host veths) that no endpoint of this node names: the policy
//! dataplane shuts them both ways (so a pod whose `WorkloadEndpoint` was deleted is not
//! freed from policy); this module finds them so that they are reported — a gauge, and
//! one log line when an interface becomes unknown and when it stops being so.
//!
//! It never deletes or changes an interface: an ADD in progress has its veth a moment
//! before its endpoint, and deciding what to reclaim is the CNI/GC path's business.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use netlink_packet_route::link::LinkAttribute;
use rtnetlink::Handle;

use crate::dataplane::DataplaneError;
use crate::dataplane::names::HOST_VETH_PREFIX;

/// Names of the host's `tw*` links.
pub async fn workload_links(handle: &Handle) -> Result<BTreeSet<String>, DataplaneError> {
    handle
        .link()
        .get()
        .execute()
        .try_filter_map(|l| async move {
            Ok(l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) if n.starts_with(HOST_VETH_PREFIX) => Some(n.clone()),
                _ => None,
            }))
        })
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list links"))
}

/// The links of `links` that no name of `known` covers.
pub fn unknown(links: &BTreeSet<String>, known: &BTreeSet<String>) -> BTreeSet<String> {
    links.difference(known).cloned().collect()
}

/// What was reported last, so each change is logged once.
#[derive(Debug, Default)]
pub struct UnknownReport {
    reported: BTreeSet<String>,
}

/// The transitions of one check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    pub appeared: Vec<String>,
    pub resolved: Vec<String>,
}

impl UnknownReport {
    /// Records the current unknown set and returns what changed since the last call.
    pub fn update(&mut self, now: BTreeSet<String>) -> Transitions {
        let t = Transitions {
            appeared: now.difference(&self.reported).cloned().collect(),
            resolved: self.reported.difference(&now).cloned().collect(),
        };
        self.reported = now;
        t
    }

    pub fn count(&self) -> usize {
        self.reported.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn links_without_endpoint_are_unknown_and_reported_once() {
        let links = set(&["tw0a", "tw0b", "tw0c"]);
        let u = unknown(&links, &set(&["tw0a", "tw0z"]));
        assert_eq!(u, set(&["tw0b", "tw0c"]));
        let mut r = UnknownReport::default();
        let t = r.update(u.clone());
        assert_eq!(t.appeared, vec!["tw0b", "tw0c"]);
        assert!(t.resolved.is_empty());
        assert_eq!(r.update(u), Transitions::default());
        let t = r.update(set(&["tw0c"]));
        assert_eq!(t.resolved, vec!["tw0b"]);
        assert_eq!(r.count(), 1);
    }
}
