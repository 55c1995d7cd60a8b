//! The BGP plan as behaviours: mesh, explicit peers, selectors both ways, reflectors,
//! filters, and objects that cannot be used.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use twill_api::resources::{
    AsNumber, BFDProfile, BFDProfileSpec, BGPConfiguration, BGPConfigurationSpec, BGPFilter,
    BGPPeer, BGPPeerSpec, Node, NodeBGPSpec, NodeSpec,
};

use super::*;

fn node(name: &str, v4: &str, labels: &[(&str, &str)]) -> (String, Node) {
    let n = Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: NodeSpec {
            bgp: Some(NodeBGPSpec {
                ipv4_address: Some(format!("{v4}/24")),
                ..Default::default()
            }),
        },
        status: None,
    };
    (name.to_string(), n)
}

fn peer(name: &str, spec: BGPPeerSpec) -> (String, BGPPeer) {
    let mut p = BGPPeer::new(name, spec);
    p.metadata.name = Some(name.into());
    (name.to_string(), p)
}

struct World {
    nodes: BTreeMap<String, Node>,
    configs: BTreeMap<String, BGPConfiguration>,
    peers: BTreeMap<String, BGPPeer>,
    filters: BTreeMap<String, BGPFilter>,
    bfd_profiles: BTreeMap<String, BFDProfile>,
    secrets: BTreeMap<(String, String), String>,
}

impl World {
    fn three() -> World {
        World {
            nodes: [
                node("n1", "192.0.2.11", &[("rack", "a")]),
                node("n2", "192.0.2.12", &[("rack", "a")]),
                node("n3", "192.0.2.13", &[("rack", "b"), ("rr", "true")]),
            ]
            .into(),
            configs: BTreeMap::new(),
            peers: BTreeMap::new(),
            filters: BTreeMap::new(),
            bfd_profiles: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    fn plan(&self, me: &str) -> BgpPlan {
        plan(BgpInputs {
            node: me,
            nodes: &self.nodes,
            configs: &self.configs,
            peers: &self.peers,
            filters: &self.filters,
            bfd_profiles: &self.bfd_profiles,
            secrets: &self.secrets,
        })
    }

    fn mesh(&mut self, on: bool, asn: Option<u32>) {
        self.configs.insert(
            "default".into(),
            BGPConfiguration::new(
                "default",
                BGPConfigurationSpec {
                    node_to_node_mesh_enabled: Some(on),
                    as_number: asn.map(AsNumber),
                    ..Default::default()
                },
            ),
        );
    }
}

fn addrs(p: &BgpPlan) -> Vec<String> {
    p.peers.iter().map(|p| p.address.to_string()).collect()
}

#[test]
fn full_mesh_by_default_with_the_default_asn() {
    let w = World::three();
    let p = w.plan("n1");
    assert_eq!(p.asn, DEFAULT_ASN);
    assert_eq!(p.router_id.to_string(), "192.0.2.11");
    assert_eq!(p.listen_port, 179);
    assert_eq!(addrs(&p), ["192.0.2.12", "192.0.2.13"]);
    assert!(p.peers.iter().all(|x| x.asn == DEFAULT_ASN
        && x.families == [Family::Ipv4Unicast]
        && x.source_address == Some("192.0.2.11".parse().unwrap())));
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn mesh_off_leaves_only_explicit_peers() {
    let mut w = World::three();
    w.mesh(false, Some(65010));
    w.peers.extend([peer(
        "tor",
        BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(AsNumber(65000)),
            ..Default::default()
        },
    )]);
    let p = w.plan("n2");
    assert_eq!(p.asn, 65010);
    assert_eq!(addrs(&p), ["192.0.2.1"]);
    assert_eq!(p.peers[0].asn, 65000);
    assert!(!p.peers[0].next_hop_self, "eBGP needs no next-hop-self");
    assert!(
        p.peers[0].export_local_only,
        "a ToR hears only the node's own prefixes"
    );
}

#[test]
fn peer_by_node_name_or_selector_applies_only_to_those_nodes() {
    let mut w = World::three();
    w.mesh(false, None);
    w.peers.extend([
        peer(
            "only-n1",
            BGPPeerSpec {
                node: Some("n1".into()),
                peer_ip: Some("198.51.100.1:1179".into()),
                as_number: Some(AsNumber(65001)),
                ..Default::default()
            },
        ),
        peer(
            "rack-b",
            BGPPeerSpec {
                node_selector: Some("rack == 'b'".into()),
                peer_ip: Some("198.51.100.2".into()),
                as_number: Some(AsNumber(65002)),
                ..Default::default()
            },
        ),
    ]);
    let p1 = w.plan("n1");
    assert_eq!(addrs(&p1), ["198.51.100.1"]);
    assert_eq!(p1.peers[0].port, 1179);
    assert!(w.plan("n2").peers.is_empty());
    assert_eq!(addrs(&w.plan("n3")), ["198.51.100.2"]);
}

#[test]
fn peer_selector_is_symmetric_and_reflectors_take_clients() {
    let mut w = World::three();
    w.mesh(false, None);
    w.nodes
        .get_mut("n3")
        .unwrap()
        .spec
        .bgp
        .as_mut()
        .unwrap()
        .route_reflector_cluster_id = Some("192.0.2.13".into());
    w.peers.extend([peer(
        "to-rr",
        BGPPeerSpec {
            node_selector: Some("!has(rr)".into()),
            peer_selector: Some("rr == 'true'".into()),
            ..Default::default()
        },
    )]);
    let client = w.plan("n1");
    assert_eq!(addrs(&client), ["192.0.2.13"]);
    assert!(!client.peers[0].route_reflector_client);
    let rr = w.plan("n3");
    assert_eq!(rr.cluster_id, Some("192.0.2.13".parse().unwrap()));
    assert_eq!(addrs(&rr), ["192.0.2.11", "192.0.2.12"]);
    assert!(rr.peers.iter().all(|p| p.route_reflector_client));
}

#[test]
fn per_node_as_override_makes_ebgp_between_nodes() {
    let mut w = World::three();
    w.nodes
        .get_mut("n2")
        .unwrap()
        .spec
        .bgp
        .as_mut()
        .unwrap()
        .as_number = Some(AsNumber(65102));
    let p = w.plan("n1");
    let n2 = p
        .peers
        .iter()
        .find(|x| x.address.to_string() == "192.0.2.12")
        .unwrap();
    assert_eq!(n2.asn, 65102);
    assert_eq!(w.plan("n2").asn, 65102);
}

#[test]
fn filters_are_converted_and_a_peer_naming_an_unknown_one_is_held() {
    let mut w = World::three();
    w.mesh(false, None);
    let filter: BGPFilter = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.twill.dev/v1", "kind": "BGPFilter",
        "metadata": {"name": "no-default"},
        "spec": {"exportV4": [{"cidr": "0.0.0.0/0", "matchOperator": "Equal", "action": "Reject"}]}
    }))
    .unwrap();
    w.filters.insert("no-default".into(), filter);
    w.peers.extend([peer(
        "tor",
        BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(AsNumber(65000)),
            filters: vec!["no-default".into(), "missing".into()],
            ..Default::default()
        },
    )]);
    let p = w.plan("n1");
    assert_eq!(p.peers[0].export, ["no-default"]);
    assert_eq!(p.filters["no-default"].export_v4.len(), 1);
    // Never unfiltered: held, with the reason, until "missing" exists.
    assert_eq!(
        p.peers[0].held.as_deref(),
        Some("BGPFilter not found: missing")
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("missing")),
        "{:?}",
        p.warnings
    );
    let mut missing = w.filters["no-default"].clone();
    missing.metadata.name = Some("missing".into());
    w.filters.insert("missing".into(), missing);
    let p = w.plan("n1");
    assert_eq!(p.peers[0].held, None);
    assert_eq!(p.peers[0].export, ["no-default", "missing"]);
}

#[test]
fn unusable_peers_are_skipped_with_warnings() {
    let mut w = World::three();
    w.mesh(false, None);
    w.peers.extend([
        peer(
            "no-asn",
            BGPPeerSpec {
                peer_ip: Some("192.0.2.1".into()),
                ..Default::default()
            },
        ),
        peer("nothing", BGPPeerSpec::default()),
    ]);
    let p = w.plan("n1");
    assert!(p.peers.is_empty());
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
}

#[test]
fn restart_time_parses_durations() {
    assert_eq!(parse_restart_time("120s"), Ok(120));
    assert_eq!(parse_restart_time("2m"), Ok(120));
    assert_eq!(parse_restart_time("90"), Ok(90));
    assert!(parse_restart_time("2h").is_err());
    assert!(parse_restart_time("soon").is_err());
}

#[test]
fn passwords_come_inline_or_from_secrets_and_an_unreadable_secret_holds_the_peer() {
    use twill_api::resources::bgp::{SecretKeyRef, SecretKeySelector};
    let mut w = World::three();
    w.mesh(false, None);
    let with_password = |ip: &str, password: SecretKeyRef| BGPPeerSpec {
        peer_ip: Some(ip.into()),
        as_number: Some(AsNumber(65000)),
        password: Some(password),
        ..Default::default()
    };
    w.peers.extend([
        peer(
            "inline",
            with_password(
                "198.51.100.1",
                SecretKeyRef {
                    value: Some("s3cret".into()),
                    secret_key_ref: None,
                },
            ),
        ),
        peer(
            "from-secret",
            with_password(
                "198.51.100.2",
                SecretKeyRef {
                    value: None,
                    secret_key_ref: Some(SecretKeySelector {
                        name: "bgp-passwords".into(),
                        key: "tor-b".into(),
                    }),
                },
            ),
        ),
    ]);
    assert_eq!(
        secret_refs(w.peers.values()),
        [("bgp-passwords".to_string(), "tor-b".to_string())].into()
    );
    // The Secret cannot be read: that peer is held (no session), with a warning.
    let p = w.plan("n1");
    assert_eq!(addrs(&p), ["198.51.100.1", "198.51.100.2"]);
    assert_eq!(p.peers[0].password.as_deref(), Some("s3cret"));
    assert_eq!(p.peers[0].held, None);
    assert_eq!(
        p.peers[1].held.as_deref(),
        Some("password Secret bgp-passwords/tor-b cannot be read")
    );
    assert!(
        p.warnings.iter().any(|w| w.contains("bgp-passwords/tor-b")),
        "{:?}",
        p.warnings
    );
    // Once read, the peer comes with its password.
    w.secrets
        .insert(("bgp-passwords".into(), "tor-b".into()), "from-k8s".into());
    let p = w.plan("n1");
    assert_eq!(addrs(&p), ["198.51.100.1", "198.51.100.2"]);
    assert_eq!(p.peers[1].password.as_deref(), Some("from-k8s"));
    assert_eq!(p.peers[1].held, None);
}

fn bfd_profile(w: &mut World, name: &str, ms: u32, multiplier: u32) {
    w.bfd_profiles.insert(
        name.into(),
        BFDProfile::new(
            name,
            BFDProfileSpec {
                receive_interval: Some(ms),
                transmit_interval: Some(ms),
                detect_multiplier: Some(multiplier),
                ..Default::default()
            },
        ),
    );
}

fn peer_at<'a>(p: &'a BgpPlan, address: &str) -> &'a PeerConfig {
    p.peers
        .iter()
        .find(|x| x.address.to_string() == address)
        .unwrap_or_else(|| panic!("no peer {address} in {:?}", addrs(p)))
}

#[test]
fn bfd_profiles_map_onto_mesh_and_peer_sessions() {
    let mut w = World::three();
    bfd_profile(&mut w, "fast", 100, 3);
    bfd_profile(&mut w, "slow", 1000, 5);
    w.mesh(true, None);
    w.configs
        .get_mut("default")
        .unwrap()
        .spec
        .node_mesh_bfd_profile = Some("fast".into());
    w.peers.extend([
        peer(
            "tor",
            BGPPeerSpec {
                peer_ip: Some("192.0.2.1".into()),
                as_number: Some(AsNumber(65000)),
                bfd_profile: Some("slow".into()),
                ..Default::default()
            },
        ),
        peer(
            "far",
            BGPPeerSpec {
                peer_ip: Some("198.51.100.1".into()),
                as_number: Some(AsNumber(65001)),
                bfd_profile: Some("slow".into()),
                ..Default::default()
            },
        ),
        peer(
            "plain",
            BGPPeerSpec {
                peer_ip: Some("192.0.2.2".into()),
                as_number: Some(AsNumber(65002)),
                ..Default::default()
            },
        ),
    ]);
    let p = w.plan("n1");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let mesh = peer_at(&p, "192.0.2.12").bfd.unwrap();
    assert_eq!(
        (
            mesh.receive_interval_ms,
            mesh.transmit_interval_ms,
            mesh.detect_multiplier
        ),
        (100, 100, 3)
    );
    assert!(!mesh.multihop, "a node on the same /24 is single-hop");
    let tor = peer_at(&p, "192.0.2.1").bfd.unwrap();
    assert_eq!((tor.receive_interval_ms, tor.detect_multiplier), (1000, 5));
    assert!(!tor.multihop);
    assert!(
        peer_at(&p, "198.51.100.1").bfd.unwrap().multihop,
        "a peer outside the node's network is multi-hop"
    );
    assert_eq!(peer_at(&p, "192.0.2.2").bfd, None, "no profile, no BFD");
    assert!(p.peers.iter().all(|x| x.held.is_none()));
}

#[test]
fn a_dangling_bfd_profile_holds_the_peer_until_it_exists_and_edits_apply() {
    let mut w = World::three();
    w.mesh(false, None);
    w.peers.extend([peer(
        "tor",
        BGPPeerSpec {
            peer_ip: Some("192.0.2.1".into()),
            as_number: Some(AsNumber(65000)),
            bfd_profile: Some("fast".into()),
            ..Default::default()
        },
    )]);
    let p = w.plan("n1");
    assert_eq!(
        p.peers[0].held.as_deref(),
        Some("BFDProfile fast not found")
    );
    assert!(
        p.warnings.iter().any(|x| x.contains("BFDProfile fast")),
        "{:?}",
        p.warnings
    );
    bfd_profile(&mut w, "fast", 100, 3);
    let p = w.plan("n1");
    assert_eq!(p.peers[0].held, None);
    assert_eq!(p.peers[0].bfd.unwrap().transmit_interval_ms, 100);
    // An edited profile changes the plan (applied live by the speaker).
    bfd_profile(&mut w, "fast", 200, 4);
    let edited = w.plan("n1");
    assert_ne!(edited, p);
    assert_eq!(edited.peers[0].bfd.unwrap().transmit_interval_ms, 200);
    assert_eq!(edited.peers[0].bfd.unwrap().detect_multiplier, 4);
    // Deleted: held again.
    w.bfd_profiles.clear();
    assert!(w.plan("n1").peers[0].held.is_some());
    // The peer no longer naming a profile: BFD off, not held.
    w.peers.get_mut("tor").unwrap().spec.bfd_profile = None;
    let p = w.plan("n1");
    assert_eq!((p.peers[0].held.as_deref(), p.peers[0].bfd), (None, None));
}

#[test]
fn a_dangling_mesh_bfd_profile_holds_the_mesh_sessions() {
    let mut w = World::three();
    w.mesh(true, None);
    w.configs
        .get_mut("default")
        .unwrap()
        .spec
        .node_mesh_bfd_profile = Some("gone".into());
    let p = w.plan("n1");
    assert!(
        p.peers
            .iter()
            .all(|x| x.held.as_deref() == Some("BFDProfile gone not found")),
        "{:?}",
        p.peers
    );
}

#[test]
fn unnumbered_peers_become_interface_peers_of_both_families_with_extended_next_hop() {
    let mut w = World::three();
    w.mesh(false, Some(65010));
    for (name, interface) in [("tor-a", "eth0"), ("tor-b", "eth1")] {
        w.peers.extend([peer(
            name,
            BGPPeerSpec {
                node: Some("n1".into()),
                interface: Some(interface.into()),
                as_number: Some(AsNumber(65000)),
                ..Default::default()
            },
        )]);
    }
    let p = w.plan("n1");
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    // Two peers (no address yet, one per interface), not one collapsed into the other.
    let interfaces: Vec<_> = p.peers.iter().map(|x| x.interface.clone()).collect();
    assert_eq!(interfaces, [Some("eth0".into()), Some("eth1".into())]);
    for x in &p.peers {
        assert!(x.address.is_unspecified());
        assert_eq!(x.asn, 65000);
        assert_eq!(x.families, [Family::Ipv4Unicast, Family::Ipv6Unicast]);
        assert!(x.extended_next_hop);
        assert_eq!(x.source_address, None);
    }
    // Only the node it names.
    assert!(w.plan("n2").peers.is_empty());
}
