//! twill-bgpd over IPv6 sessions with FRR (iBGP) and GoBGP (eBGP, and iBGP with a
//! link-local next hop), each peer in its own namespace: routes both ways into both
//! kernels, withdraws, and an IPv6 link-local next hop installed through the interface
//! the peer is reached on.

mod support;

use std::process::Command;

use support::peers::{Frr, Gobgp};
use support::wire::{link_local_of, only_link};
use support::*;

fn twill_v6(asn: u32, peer_asn: u32, originate: &str) -> String {
    format!(
        "asn: {asn}\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
         originate: [{originate}]\nkernel: {{ install: true }}\n\
         peers: [{{ address: \"fd00:1::2\", asn: {peer_asn}, hold_time: 9, connect_retry: 1, \
         families: [ipv6-unicast] }}]\n"
    )
}

fn gobgp_toml(asn: u32, peer_asn: u32) -> String {
    format!(
        r#"
[global.config]
  as = {asn}
  router-id = "192.0.2.2"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00:1::1"
    peer-as = {peer_asn}
  [neighbors.transport.config]
    local-address = "fd00:1::2"
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#
    )
}

fn gobgp_add(ns: &twill_harness::netns::Netns, prefix: &str, next_hop: &str) {
    let out = Gobgp::cli(
        ns,
        &[
            "global", "rib", "add", prefix, "nexthop", next_hop, "-a", "ipv6",
        ],
    );
    assert!(!out.contains("rror"), "{out}");
}

#[test]
fn gobgp_ebgp_ipv6_routes_both_ways_and_withdraw() {
    let (t, g) = linked("g6", &["fd00:1::1/64"], &["fd00:1::2/64"]);
    let gobgp = Gobgp::start(&g, &gobgp_toml(65002, 65001));
    let twill = Twill::start(&t, &twill_v6(65001, 65002, "\"fd00:244:1::/64\""));
    let ctx = || {
        format!(
            "gobgpd:\n{}\nneighbor:\n{}\ntwill:\n{}\nroutes:\n{}",
            gobgp.guard.log_tail(20),
            Gobgp::cli(&g, &["neighbor"]),
            twill.guard.log_tail(30),
            twill_routes(&t)
        )
    };
    wait_for(
        "GoBGP IPv6 session",
        SESSION_TIMEOUT,
        || Gobgp::cli(&g, &["neighbor"]).contains("Establ"),
        ctx,
    );
    gobgp_add(&g, "fd00:244:2::/64", "fd00:1::2");
    gobgp_add(&g, "fd00:244:3::/64", "fd00:1::2");
    wait_for(
        "GoBGP's IPv6 routes in twill's kernel",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("fd00:244:2::/64 via fd00:1::2")
                && r.contains("fd00:244:3::/64 via fd00:1::2")
        },
        ctx,
    );
    wait_for(
        "twill's IPv6 prefix in GoBGP's RIB, AS path 65001, next hop twill",
        SESSION_TIMEOUT,
        || {
            let rib = Gobgp::cli(&g, &["global", "rib", "-a", "ipv6", "fd00:244:1::/64"]);
            rib.contains("fd00:1::1") && rib.contains("65001")
        },
        ctx,
    );
    Gobgp::cli(
        &g,
        &["global", "rib", "del", "fd00:244:3::/64", "-a", "ipv6"],
    );
    wait_for(
        "GoBGP's IPv6 withdraw reaches twill's kernel",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("fd00:244:3::/64"),
        ctx,
    );
    assert!(twill_routes(&t).contains("fd00:244:2::/64"), "{}", ctx());
}

#[test]
fn a_link_local_next_hop_is_installed_through_the_peers_interface() {
    let (t, g) = linked("ll", &["fd00:1::1/64"], &["fd00:1::2/64"]);
    // A known link-local address on GoBGP's side of the link.
    let links = g.ip(&["-o", "link", "show"]).unwrap();
    let gdev = links
        .lines()
        .find(|l| l.contains("veth") || l.contains('@'))
        .and_then(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .unwrap();
    g.add_addr(&gdev, "fe80::2/64").unwrap();
    // iBGP: GoBGP passes the next hop it was given unchanged, here a link-local one alone.
    let gobgp = Gobgp::start(&g, &gobgp_toml(65001, 65001));
    let twill = Twill::start(&t, &twill_v6(65001, 65001, ""));
    let ctx = || {
        format!(
            "gobgpd:\n{}\nneighbor:\n{}\ntwill:\n{}\nroutes:\n{}",
            gobgp.guard.log_tail(20),
            Gobgp::cli(&g, &["neighbor"]),
            twill.guard.log_tail(30),
            twill_routes(&t)
        )
    };
    wait_for(
        "GoBGP iBGP IPv6 session",
        SESSION_TIMEOUT,
        || Gobgp::cli(&g, &["neighbor"]).contains("Establ"),
        ctx,
    );
    gobgp_add(&g, "fd00:244:7::/64", "fe80::2");
    // The interface twill reaches GoBGP through.
    let via = t.ip(&["-6", "route", "get", "fd00:1::2"]).unwrap();
    let tdev = via
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap()
        .to_owned();
    wait_for(
        "the link-local next hop in twill's kernel, out of the peer's interface",
        SESSION_TIMEOUT,
        || twill_routes(&t).contains(&format!("fd00:244:7::/64 via fe80::2 dev {tdev}")),
        ctx,
    );
    // And it forwards: the next hop resolves to GoBGP's side of the link.
    let out = t.ip(&["-6", "route", "get", "fd00:244:7::1"]).unwrap();
    assert!(out.contains(&format!("via fe80::2 dev {tdev}")), "{out}");
}

#[test]
fn frr_ibgp_ipv6_routes_both_ways_and_withdraw() {
    let (t, f) = linked("f6", &["fd00:1::1/64"], &["fd00:1::2/64"]);
    let conf = "hostname frr\n\
         router bgp 65001\n \
          bgp router-id 192.0.2.2\n \
          no bgp default ipv4-unicast\n \
          no bgp network import-check\n \
          neighbor fd00:1::1 remote-as 65001\n \
          neighbor fd00:1::1 timers 3 9\n \
          neighbor fd00:1::1 timers connect 1\n \
          address-family ipv6 unicast\n  \
           network fd00:244:2::/64\n  \
           network fd00:244:3::/64\n  \
           neighbor fd00:1::1 activate\n \
          exit-address-family\n";
    let frr = Frr::start(&f, conf);
    let twill = Twill::start(&t, &twill_v6(65001, 65001, "\"fd00:244:1::/64\""));
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\nroutes:\n{}",
            frr.context(),
            twill.guard.log_tail(30),
            twill_routes(&t)
        )
    };
    wait_for(
        "FRR IPv6 iBGP session",
        SESSION_TIMEOUT,
        || frr.established("fd00:1::1"),
        ctx,
    );
    wait_for(
        "FRR's IPv6 networks in twill's kernel (global next hop)",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("fd00:244:2::/64 via fd00:1::2")
                && r.contains("fd00:244:3::/64 via fd00:1::2")
        },
        ctx,
    );
    // Twill sends its link-local next hop beside the global one (RFC 2545, a shared
    // link); FRR installs the link-local one, through its interface to twill.
    let t_ll = link_local_of(&t, &only_link(&t));
    wait_for(
        "twill's IPv6 prefix in FRR's kernel (through zebra)",
        SESSION_TIMEOUT,
        || route_of(&f, "fd00:244:1::/64").contains(&format!("via {t_ll} dev")),
        ctx,
    );
    let shown = frr.vtysh("show bgp ipv6 unicast fd00:244:1::/64");
    assert!(
        shown.contains("Local") || shown.contains("localpref 100"),
        "{shown}"
    );
    let out = Command::new("vtysh")
        .arg("--vty_socket")
        .arg(frr.dir.path())
        .args([
            "-c",
            "configure terminal",
            "-c",
            "router bgp 65001",
            "-c",
            "address-family ipv6 unicast",
            "-c",
            "no network fd00:244:3::/64",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    wait_for(
        "FRR's IPv6 withdraw reaches twill's kernel",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("fd00:244:3::/64"),
        ctx,
    );
    assert!(twill_routes(&t).contains("fd00:244:2::/64"), "{}", ctx());
}
