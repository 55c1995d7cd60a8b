use super::*;

const DOCUMENTED_EXAMPLE: &str = r#"
asn: 64512                 # 4-byte ASNs allowed
router_id: 192.0.2.2
listen: { address: "::", port: 179 }   # port 0 = do not listen (active only)
originate: [10.244.1.0/26, "fd00:10:244:1::/64"]
kernel: { install: true }  # put best paths into the kernel's main table
route_reflector: { cluster_id: 192.0.2.2 }   # optional; then peers may be clients
peers:
  - address: 192.0.2.1
    asn: 65000
    passive: false
    password: null          # TCP-MD5 (RFC 2385) when set
    hold_time: 90
    route_reflector_client: false
    next_hop_self: false
    families: [ipv4-unicast, ipv6-unicast]
    graceful_restart: { enabled: true, restart_time: 120 }
"#;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn design_example_parses() {
    let c = Config::parse(DOCUMENTED_EXAMPLE).unwrap();
    assert_eq!(c.asn, 64512);
    assert_eq!(c.originate.len(), 2);
    assert!(c.kernel.install);
    assert_eq!(c.peers[0].asn, 65000);
    assert_eq!(
        c.peers[0].families,
        vec![Family::Ipv4Unicast, Family::Ipv6Unicast]
    );
    assert_eq!(c.peers[0].graceful_restart.restart_time, 120);
}

#[test]
fn four_octet_asns_are_accepted() {
    let c = Config::parse(
        "asn: 4200000001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 4294967294}]\n",
    )
    .unwrap();
    assert_eq!(c.asn, 4_200_000_001);
    assert_eq!(c.peers[0].asn, 4_294_967_294);
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse("asn: 65001\nrouter_id: 192.0.2.1\n").unwrap();
    assert_eq!(c.listen.port, 179);
    assert!(!c.kernel.install);
    assert!(c.peers.is_empty());
}

#[test]
fn unknown_field_is_named() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 1, hodl_time: 3}]\n",
    );
    assert!(e.contains("hodl_time"), "{e}");
}

#[test]
fn bad_value_names_its_path() {
    let e = err("asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: lots}]\n");
    assert!(e.contains("peers[0].asn"), "{e}");
}

#[test]
fn asn_above_32_bits_is_refused() {
    let e = err("asn: 4294967296\nrouter_id: 192.0.2.1\n");
    assert!(e.contains("asn"), "{e}");
}

#[test]
fn hold_time_of_two_seconds_is_refused_with_the_field() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 1, hold_time: 2}]\n",
    );
    assert!(e.starts_with("peers[0].hold_time:"), "{e}");
}

#[test]
fn unknown_family_is_refused() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 1, families: [l2vpn-evpn]}]\n",
    );
    assert!(e.contains("peers[0].families"), "{e}");
}

#[test]
fn duplicate_peer_is_refused() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 1}, {address: 192.0.2.9, asn: 2}]\n",
    );
    assert!(e.starts_with("peers[1].address:"), "{e}");
}

#[test]
fn rr_client_without_cluster_id_is_refused() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 65001, route_reflector_client: true}]\n",
    );
    assert!(e.starts_with("peers[0].route_reflector_client:"), "{e}");
}

#[test]
fn filter_reference_must_exist() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 1, import: [nope]}]\n",
    );
    assert!(e.starts_with("peers[0].import[0]:"), "{e}");
}

#[test]
fn calico_shaped_filter_parses() {
    let c = Config::parse(
        r#"
asn: 65001
router_id: 192.0.2.1
filters:
  pods-only:
    exportV4:
      - { action: Accept, matchOperator: In, cidr: 10.244.0.0/16 }
      - { action: Reject }
peers: [{address: 192.0.2.9, asn: 1, export: [pods-only]}]
"#,
    )
    .unwrap();
    assert_eq!(c.filters["pods-only"].export_v4.len(), 2);
}

#[test]
fn filter_rule_of_the_wrong_family_is_named() {
    let e = err(
        "asn: 65001\nrouter_id: 192.0.2.1\nfilters: {f: {import_v4: [{action: Accept, cidr: 'fd00::/8'}]}}\n",
    );
    assert!(e.starts_with("filters.f.import_v4[0].cidr:"), "{e}");
}

#[test]
fn bfd_block_parses_with_defaults_for_what_is_left_out() {
    let c = Config::parse(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers:\n  - address: 192.0.2.9\n    asn: 1\n    bfd: { receive_interval_ms: 100, transmit_interval_ms: 100 }\n  - address: 192.0.2.10\n    asn: 1\n",
    )
    .unwrap();
    let b = c.peers[0].bfd_enabled().unwrap();
    assert_eq!(
        (
            b.receive_interval_ms,
            b.transmit_interval_ms,
            b.detect_multiplier
        ),
        (100, 100, 3)
    );
    assert!(!b.multihop && !b.passive);
    assert_eq!(b.minimum_ttl, 254);
    assert!(c.peers[1].bfd_enabled().is_none());
}

#[test]
fn bfd_disabled_block_is_off() {
    let c = Config::parse(
        "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{address: 192.0.2.9, asn: 1, bfd: {enabled: false}}]\n",
    )
    .unwrap();
    assert!(c.peers[0].bfd_enabled().is_none());
}

#[test]
fn bfd_out_of_range_values_are_named() {
    for (field, block) in [
        ("detect_multiplier", "{detect_multiplier: 0}"),
        ("receive_interval_ms", "{receive_interval_ms: 5}"),
        ("transmit_interval_ms", "{transmit_interval_ms: 60001}"),
        ("minimum_ttl", "{multihop: true, minimum_ttl: 0}"),
    ] {
        let e = err(&format!(
            "asn: 65001\nrouter_id: 192.0.2.1\npeers: [{{address: 192.0.2.9, asn: 1, bfd: {block}}}]\n"
        ));
        assert!(e.starts_with(&format!("peers[0].bfd.{field}:")), "{e}");
    }
}

#[test]
fn unnumbered_peers_name_an_interface_instead_of_an_address() {
    let base = "asn: 65001\nrouter_id: 192.0.2.1\npeers:\n";
    let c = Config::parse(&format!("{base}  - {{ interface: eth0, asn: 65002 }}\n")).unwrap();
    assert_eq!(c.peers[0].interface.as_deref(), Some("eth0"));
    assert!(c.peers[0].address.is_unspecified());
    // Two unnumbered peers on different interfaces are two peers; on one, a duplicate.
    let two = "  - { interface: eth0, asn: 65002 }\n  - { interface: eth1, asn: 65003 }\n";
    assert_eq!(
        Config::parse(&format!("{base}{two}")).unwrap().peers.len(),
        2
    );
    let dup = "  - { interface: eth0, asn: 65002 }\n  - { interface: eth0, asn: 65003 }\n";
    assert!(err(&format!("{base}{dup}")).contains("peers[1].interface"));
    // A global address and an interface contradict each other; neither is no peer.
    let both = "  - { interface: eth0, address: 192.0.2.2, asn: 65002 }\n";
    assert!(err(&format!("{base}{both}")).contains("peers[0].address"));
    assert!(err(&format!("{base}  - {{ asn: 65002 }}\n")).contains("peers[0].address"));
}
