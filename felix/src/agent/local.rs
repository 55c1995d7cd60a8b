//! What this node owns, as pure data derived from the snapshot and its endpoints: the
//! blocks affine to it (held by blackhole routes and announced), the addresses its pods
//! borrowed from other nodes' blocks (announced as /32 or /128), and the host routes felix
//! wants in the kernel.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::resources::IPAMBlock;
use twill_ipam::model::block_from_spec;

use crate::cni::Endpoint;
use crate::dataplane::{HostRoute, RouteTarget};

/// This node's share of the IPAM state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// Blocks affine to this node.
    pub blocks: BTreeSet<IpNet>,
    /// Addresses of other nodes' blocks held by this node's workloads.
    pub borrowed: BTreeSet<IpAddr>,
}

/// Reads the blocks: affinity `host:<node>`, and allocations whose `node` attribute is this
/// node inside blocks that are not.
pub fn owned<'a>(node: &str, blocks: impl IntoIterator<Item = &'a IPAMBlock>) -> Owned {
    let mut out = Owned::default();
    for object in blocks {
        let Ok(block) = block_from_spec(&object.spec) else {
            continue;
        };
        if block.is_affine_to(node) {
            out.blocks.insert(block.cidr);
            continue;
        }
        for (addr, alloc) in block.used_addrs() {
            if alloc.attrs.get("node").map(String::as_str) == Some(node) {
                out.borrowed.insert(addr);
            }
        }
    }
    out
}

/// The prefixes this node announces: its blocks and its borrowed addresses.
pub fn originated(owned: &Owned) -> BTreeSet<IpNet> {
    owned
        .blocks
        .iter()
        .copied()
        .chain(owned.borrowed.iter().map(|a| IpNet::from(*a)))
        .collect()
}

/// The host routes felix wants: a blackhole per local block, a device route per local pod
/// address. A pod address outside every local block (borrowed) gets its device route too.
pub fn desired_routes(owned: &Owned, endpoints: &[Endpoint]) -> Vec<HostRoute> {
    let mut routes: BTreeMap<IpNet, RouteTarget> = owned
        .blocks
        .iter()
        .map(|b| (*b, RouteTarget::Blackhole))
        .collect();
    for ep in endpoints {
        if ep.host_ifname.is_empty() {
            continue;
        }
        for ip in &ep.ips {
            routes.insert(IpNet::from(*ip), RouteTarget::Dev(ep.host_ifname.clone()));
        }
    }
    routes
        .into_iter()
        .map(|(dst, target)| HostRoute { dst, target })
        .collect()
}

/// The change between what was announced and what should be, each prefix with what it
/// carries (its communities): (announce again or anew, withdraw).
pub fn announce_diff<T: PartialEq>(
    before: &BTreeMap<IpNet, T>,
    after: &BTreeMap<IpNet, T>,
) -> (Vec<IpNet>, Vec<IpNet>) {
    (
        after
            .iter()
            .filter(|(p, t)| before.get(*p) != Some(*t))
            .map(|(p, _)| *p)
            .collect(),
        before
            .keys()
            .filter(|p| !after.contains_key(*p))
            .copied()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use twill_ipam::block::Block;
    use twill_ipam::model::block_to_spec;

    use super::*;
    use crate::cni::EndpointKey;

    fn block(cidr: &str, affinity: Option<&str>, held: &[(&str, &str)]) -> IPAMBlock {
        let mut b = Block::new(cidr.parse().unwrap(), affinity.map(str::to_string));
        for (handle, node) in held {
            let attrs = BTreeMap::from([("node".to_string(), node.to_string())]);
            b.allocate(handle, &attrs, &|_| false).unwrap();
        }
        IPAMBlock::new(&cidr.replace(['/', '.'], "-"), block_to_spec(&b, false))
    }

    fn ep(ifname: &str, ips: &[&str]) -> Endpoint {
        Endpoint {
            key: EndpointKey {
                network: "twill".into(),
                container_id: ifname.into(),
                ifname: "eth0".into(),
            },
            netns: String::new(),
            pod_namespace: String::new(),
            pod_name: String::new(),
            labels: BTreeMap::new(),
            host_ifname: ifname.into(),
            pod_mac: String::new(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            mtu: 1500,
        }
    }

    #[test]
    fn own_blocks_and_borrowed_addresses_are_announced() {
        let blocks = [
            block("10.244.1.0/26", Some("n1"), &[("h1", "n1")]),
            block("10.244.2.0/26", Some("n2"), &[("h2", "n2"), ("h3", "n1")]),
            block("10.244.3.0/26", None, &[]),
        ];
        let mine = owned("n1", &blocks);
        assert_eq!(
            mine.blocks,
            BTreeSet::from(["10.244.1.0/26".parse().unwrap()])
        );
        assert_eq!(mine.borrowed.len(), 1);
        let borrowed = *mine.borrowed.iter().next().unwrap();
        assert!(
            "10.244.2.0/26"
                .parse::<IpNet>()
                .unwrap()
                .contains(&borrowed)
        );
        let ann = originated(&mine);
        assert!(ann.contains(&"10.244.1.0/26".parse().unwrap()));
        assert!(ann.contains(&IpNet::from(borrowed)));
        assert_eq!(ann.len(), 2);
    }

    #[test]
    fn routes_hold_blocks_and_point_pods_at_their_veths() {
        let mine = Owned {
            blocks: BTreeSet::from(["10.244.1.0/26".parse().unwrap()]),
            borrowed: BTreeSet::new(),
        };
        let routes = desired_routes(
            &mine,
            &[
                ep("twa", &["10.244.1.2", "fd00::2"]),
                ep("", &["10.244.1.3"]),
            ],
        );
        let shown: Vec<String> = routes
            .iter()
            .map(|r| format!("{} {:?}", r.dst, r.target))
            .collect();
        assert_eq!(
            shown,
            [
                "10.244.1.0/26 Blackhole",
                "10.244.1.2/32 Dev(\"twa\")",
                "fd00::2/128 Dev(\"twa\")"
            ]
        );
    }

    #[test]
    fn announce_diff_names_what_changed() {
        let p1: IpNet = "10.244.1.0/26".parse().unwrap();
        let p2: IpNet = "10.244.2.0/26".parse().unwrap();
        let a = BTreeMap::from([(p1, 0)]);
        let b = BTreeMap::from([(p2, 0)]);
        assert_eq!(announce_diff(&a, &b), (vec![p2], vec![p1]));
        assert_eq!(announce_diff(&a, &a), (vec![], vec![]));
        // Same prefix, other communities: announced again, not withdrawn.
        let c = BTreeMap::from([(p1, 7)]);
        assert_eq!(announce_diff(&a, &c), (vec![p1], vec![]));
    }
}
