//! twill-bgpd against real FRR (zebra + bgpd) and GoBGP, each in its own namespace.

mod support;

use std::time::Duration;

use support::peers::{Frr, Gobgp};
use support::*;

#[test]
fn frr_ebgp_with_4_octet_asns_routes_both_ways_and_withdraw() {
    let (t, f) = linked("fr", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let conf = |networks: &[&str]| {
        let nets: String = networks
            .iter()
            .map(|n| format!("  network {n}\n"))
            .collect();
        format!(
            "hostname frr\n\
             router bgp 4200000002\n \
              bgp router-id 192.0.2.2\n \
              no bgp ebgp-requires-policy\n \
              no bgp network import-check\n \
              neighbor 192.0.2.1 remote-as 4200000001\n \
              neighbor 192.0.2.1 timers 3 9\n \
              neighbor 192.0.2.1 timers connect 1\n \
              address-family ipv4 unicast\n{nets} \
              exit-address-family\n"
        )
    };
    let frr = Frr::start(&f, &conf(&["10.244.2.0/26", "10.244.3.0/26"]));
    let twill = Twill::start(
        &t,
        "asn: 4200000001\nrouter_id: 192.0.2.1\nlisten: { address: 0.0.0.0, port: 179 }\n\
         originate: [10.244.1.0/26]\nkernel: { install: true }\n\
         peers: [{ address: 192.0.2.2, asn: 4200000002, hold_time: 9, connect_retry: 1 }]\n",
    );
    let ctx = || format!("{}\ntwill:\n{}", frr.context(), twill.guard.log_tail(30));
    wait_for(
        "FRR session",
        SESSION_TIMEOUT,
        || frr.established("192.0.2.1"),
        ctx,
    );
    wait_for(
        "FRR's networks in twill's kernel",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("10.244.2.0/26 via 192.0.2.2") && r.contains("10.244.3.0/26 via 192.0.2.2")
        },
        ctx,
    );
    wait_for(
        "twill's prefix in FRR's kernel (through zebra)",
        SESSION_TIMEOUT,
        || route_of(&f, "10.244.1.0/26").contains("via 192.0.2.1"),
        ctx,
    );
    let shown = frr.vtysh("show bgp ipv4 unicast 10.244.1.0/26");
    assert!(shown.contains("4200000001"), "{shown}");

    // FRR withdraws one network.
    let out = Command::new("vtysh")
        .arg("--vty_socket")
        .arg(frr.dir.path())
        .args([
            "-c",
            "configure terminal",
            "-c",
            "router bgp 4200000002",
            "-c",
            "address-family ipv4 unicast",
            "-c",
            "no network 10.244.3.0/26",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "FRR's withdrawn network leaves twill's kernel",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("10.244.3.0/26"),
        ctx,
    );
    assert!(twill_routes(&t).contains("10.244.2.0/26"));
}

use std::process::Command;

const GOBGP_TOML: &str = r#"
[global.config]
  as = 65001
  router-id = "192.0.2.2"
  port = 179

[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.1"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"#;

#[test]
fn gobgp_ibgp_routes_both_ways_and_withdraw() {
    let (t, g) = linked("gb", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let gobgp = Gobgp::start(&g, GOBGP_TOML);
    let twill = Twill::start(
        &t,
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: 0.0.0.0, port: 179 }\n\
         originate: [10.244.1.0/26]\nkernel: { install: true }\n\
         peers: [{ address: 192.0.2.2, asn: 65001, hold_time: 9, connect_retry: 1 }]\n",
    );
    let ctx = || {
        format!(
            "gobgpd:\n{}\nneighbor:\n{}\ntwill:\n{}",
            gobgp.guard.log_tail(20),
            Gobgp::cli(&g, &["neighbor"]),
            twill.guard.log_tail(30)
        )
    };
    wait_for(
        "GoBGP session",
        SESSION_TIMEOUT,
        || Gobgp::cli(&g, &["neighbor"]).contains("Establ"),
        ctx,
    );
    for p in ["10.244.2.0/26", "10.244.3.0/26"] {
        let out = Gobgp::cli(
            &g,
            &[
                "global",
                "rib",
                "add",
                p,
                "nexthop",
                "192.0.2.2",
                "-a",
                "ipv4",
            ],
        );
        assert!(!out.contains("rror"), "{out}");
    }
    wait_for(
        "GoBGP's routes in twill's kernel",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("10.244.2.0/26 via 192.0.2.2") && r.contains("10.244.3.0/26 via 192.0.2.2")
        },
        ctx,
    );
    wait_for(
        "twill's prefix in GoBGP's RIB with LOCAL_PREF",
        SESSION_TIMEOUT,
        || {
            let rib = Gobgp::cli(&g, &["global", "rib", "-a", "ipv4", "10.244.1.0/26"]);
            rib.contains("192.0.2.1") && rib.contains("LocalPref: 100")
        },
        ctx,
    );
    Gobgp::cli(&g, &["global", "rib", "del", "10.244.3.0/26", "-a", "ipv4"]);
    wait_for(
        "GoBGP's withdraw reaches twill's kernel",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("10.244.3.0/26"),
        ctx,
    );
    holds_for(
        "the other route stays",
        Duration::from_secs(1),
        || twill_routes(&t).contains("10.244.2.0/26"),
        ctx,
    );
}
