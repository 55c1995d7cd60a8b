//! `BFDProfile`s onto the speaker's per-peer BFD settings. A peering names a profile
//! (`BGPPeer.spec.bfdProfile`, or `BGPConfiguration.spec.nodeMeshBFDProfile` for the
//! mesh); the session is single-hop (RFC 5881) when the peer is on a network of this
//! node's BGP address, multi-hop (RFC 5883) otherwise. A name that does not resolve holds
//! the peering, like a missing `BGPFilter`: an operator who asked for fast failure
//! detection never silently gets the 90 s hold timer instead.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::resources::bfd::{
    DEFAULT_BFD_DETECT_MULTIPLIER, DEFAULT_BFD_INTERVAL_MS, DEFAULT_BFD_MINIMUM_TTL,
};
use twill_api::resources::{BFDProfile, BFDProfileSpec, Node};
use twill_bgpd::config::{BfdConfig, PeerConfig};

/// The speaker's BFD settings for a profile.
pub fn bfd_config(spec: &BFDProfileSpec, multihop: bool) -> BfdConfig {
    let byte = |v: Option<u32>, default: u32| u8::try_from(v.unwrap_or(default)).unwrap_or(u8::MAX);
    BfdConfig {
        enabled: true,
        receive_interval_ms: spec.receive_interval.unwrap_or(DEFAULT_BFD_INTERVAL_MS),
        transmit_interval_ms: spec.transmit_interval.unwrap_or(DEFAULT_BFD_INTERVAL_MS),
        detect_multiplier: byte(spec.detect_multiplier, DEFAULT_BFD_DETECT_MULTIPLIER).max(1),
        multihop,
        passive: spec.passive_mode.unwrap_or(false),
        minimum_ttl: byte(spec.minimum_ttl, DEFAULT_BFD_MINIMUM_TTL).max(1),
    }
}

/// Whether `peer` is beyond this node's directly connected networks: true when the
/// node's BGP address of the peer's family carries a prefix length that does not contain
/// the peer. An address without a prefix length is taken as a shared link.
pub fn is_multihop(me: Option<&Node>, peer: IpAddr) -> bool {
    let Some(bgp) = me.and_then(|n| n.spec.bgp.as_ref()) else {
        return false;
    };
    let mine = if peer.is_ipv4() {
        &bgp.ipv4_address
    } else {
        &bgp.ipv6_address
    };
    match mine.as_deref().map(str::parse::<IpNet>) {
        Some(Ok(net)) => !net.trunc().contains(&peer),
        _ => false,
    }
}

/// Sets `p`'s BFD from the profile `name` (none: BFD off). Returns the reason to hold the
/// peer when the profile does not exist.
pub fn apply(
    p: &mut PeerConfig,
    name: Option<&str>,
    profiles: &BTreeMap<String, BFDProfile>,
    me: Option<&Node>,
) -> Option<String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        p.bfd = None;
        return None;
    };
    match profiles.get(name) {
        Some(profile) => {
            p.bfd = Some(bfd_config(
                &profile.spec,
                p.interface.is_none() && is_multihop(me, p.address),
            ));
            None
        }
        None => {
            p.bfd = None;
            Some(format!("BFDProfile {name} not found"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twill_api::resources::{NodeBGPSpec, NodeSpec};

    fn node(v4: Option<&str>) -> Node {
        Node::new(
            "n1",
            NodeSpec {
                bgp: Some(NodeBGPSpec {
                    ipv4_address: v4.map(str::to_owned),
                    ..Default::default()
                }),
            },
        )
    }

    #[test]
    fn profile_defaults_fill_what_it_leaves_out() {
        let c = bfd_config(&BFDProfileSpec::default(), false);
        assert_eq!(
            (
                c.receive_interval_ms,
                c.transmit_interval_ms,
                c.detect_multiplier,
                c.passive,
                c.minimum_ttl
            ),
            (300, 300, 3, false, 254)
        );
        let c = bfd_config(
            &BFDProfileSpec {
                passive_mode: Some(true),
                minimum_ttl: Some(250),
                ..Default::default()
            },
            true,
        );
        assert!(c.passive && c.multihop);
        assert_eq!(c.minimum_ttl, 250);
    }

    #[test]
    fn multihop_is_a_peer_outside_the_nodes_network() {
        let n = node(Some("192.0.2.10/24"));
        assert!(!is_multihop(Some(&n), "192.0.2.1".parse().unwrap()));
        assert!(is_multihop(Some(&n), "198.51.100.1".parse().unwrap()));
        let bare = node(Some("192.0.2.10"));
        assert!(!is_multihop(Some(&bare), "198.51.100.1".parse().unwrap()));
        assert!(!is_multihop(None, "198.51.100.1".parse().unwrap()));
    }
}
