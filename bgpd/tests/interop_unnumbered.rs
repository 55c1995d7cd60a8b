//! Unnumbered peering with FRR: twill-bgpd's peer is `interface: <link>`, FRR's is
//! `neighbor <link> interface remote-as external`; the link has no IPv4 address and no
//! global IPv6 address at all. Each side finds the other's link-local address (FRR from
//! our router advertisements, twill from FRR's), IPv4 and IPv6 routes flow with IPv6
//! link-local next hops (RFC 8950 for IPv4), both kernels hold them through the link, and
//! traffic of both families flows between the addresses behind each side. Then BIRD as
//! a second peer of twill, on an IPv6 session with `extended next hop on`: IPv4 routes
//! cross twill from one to the other with IPv6 next hops all the way, and IPv4 traffic
//! between FRR's and BIRD's addresses flows through twill (the unnumbered peer added by
//! a reload, through `Speaker::set_peers`).

#![allow(clippy::unwrap_used)]

mod support;

use support::peers::{Bird, Frr};
use support::wire::{link_local_of, only_link};
use support::*;
use twill_harness::netns::Netns;

/// Pings from `src` to `dst` get an answer.
fn pings(from: &Netns, src: &str, dst: &str) -> bool {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    from.exec("ping", &[fam, "-c", "1", "-W", "1", "-I", src, dst])
        .is_ok_and(|o| o.contains(" 0% packet loss"))
}

#[test]
fn frr_unnumbered_ipv4_and_ipv6_over_link_local_addresses_only() {
    let (t, f) = linked("un", &[], &[]);
    let (tdev, fdev) = (only_link(&t), only_link(&f));
    let (t_ll, f_ll) = (link_local_of(&t, &tdev), link_local_of(&f, &fdev));
    for (ns, addrs) in [
        (&t, ["10.244.1.1/32", "fd00:244:1::1/128"]),
        (&f, ["10.244.2.1/32", "fd00:244:2::1/128"]),
    ] {
        for a in addrs {
            ns.add_addr("lo", a).unwrap();
        }
    }
    let conf = format!(
        "hostname frr\n\
         router bgp 65002\n \
          bgp router-id 192.0.2.2\n \
          no bgp ebgp-requires-policy\n \
          no bgp network import-check\n \
          neighbor {fdev} interface remote-as external\n \
          neighbor {fdev} timers 3 9\n \
          neighbor {fdev} timers connect 1\n \
          address-family ipv4 unicast\n  \
           network 10.244.2.0/26\n \
          exit-address-family\n \
          address-family ipv6 unicast\n  \
           network fd00:244:2::/64\n  \
           neighbor {fdev} activate\n \
          exit-address-family\n"
    );
    let frr = Frr::start(&f, &conf);
    let twill = Twill::start(
        &t,
        &format!(
            "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
             originate: [\"10.244.1.0/26\", \"fd00:244:1::/64\"]\nkernel: {{ install: true }}\n\
             peers: [{{ interface: \"{tdev}\", asn: 65002, hold_time: 9, connect_retry: 1, \
             families: [ipv4-unicast, ipv6-unicast] }}]\n"
        ),
    );
    let ctx = || {
        format!(
            "{}\nneighbor:\n{}\ntwill:\n{}\ntwill routes:\n{}\nfrr routes:\n{}\n{}",
            frr.context(),
            frr.vtysh(&format!("show bgp neighbors {fdev}")),
            twill.guard.log_tail(30),
            twill_routes(&t),
            f.ip(&["-4", "route"]).unwrap_or_default(),
            f.ip(&["-6", "route"]).unwrap_or_default(),
        )
    };
    // No IPv4 address and no global IPv6 address on the link itself.
    for (ns, dev) in [(&t, &tdev), (&f, &fdev)] {
        assert_eq!(
            ns.ip(&["-4", "-o", "addr", "show", "dev", dev])
                .unwrap()
                .trim(),
            ""
        );
        let global = ns
            .ip(&["-6", "-o", "addr", "show", "dev", dev, "scope", "global"])
            .unwrap();
        assert_eq!(global.trim(), "");
    }
    wait_for(
        "FRR's routes in twill's kernel via FRR's link-local address",
        SESSION_TIMEOUT,
        || {
            route_of(&t, "10.244.2.0/26").contains(&format!("via inet6 {f_ll} dev {tdev}"))
                && route_of(&t, "fd00:244:2::/64").contains(&format!("via {f_ll} dev {tdev}"))
        },
        ctx,
    );
    wait_for(
        "twill's routes in FRR's kernel via twill's link-local address",
        SESSION_TIMEOUT,
        || {
            route_of(&f, "10.244.1.0/26").contains(&format!("via inet6 {t_ll} dev {fdev}"))
                && route_of(&f, "fd00:244:1::/64").contains(&format!("via {t_ll} dev {fdev}"))
        },
        ctx,
    );
    wait_for(
        "IPv4 and IPv6 traffic between the addresses behind each side",
        SESSION_TIMEOUT,
        || pings(&t, "10.244.1.1", "10.244.2.1") && pings(&t, "fd00:244:1::1", "fd00:244:2::1"),
        ctx,
    );
}

fn frr_unnumbered_conf(fdev: &str) -> String {
    format!(
        "hostname frr\n\
         router bgp 65002\n \
          bgp router-id 192.0.2.2\n \
          no bgp ebgp-requires-policy\n \
          no bgp network import-check\n \
          neighbor {fdev} interface remote-as external\n \
          neighbor {fdev} timers 3 9\n \
          neighbor {fdev} timers connect 1\n \
          address-family ipv4 unicast\n  \
           network 10.244.2.0/26\n \
          exit-address-family\n"
    )
}

#[test]
fn ipv4_transit_between_an_unnumbered_frr_and_an_extended_next_hop_bird() {
    let (t, f) = linked("ux", &[], &[]);
    let (tdev, fdev) = (only_link(&t), only_link(&f));
    let (t_ll, f_ll) = (link_local_of(&t, &tdev), link_local_of(&f, &fdev));
    let b = spoke("uxb", &t, &["2001:db8:2::1/64"], &["2001:db8:2::2/64"]);
    t.enable_forwarding().unwrap();
    f.add_addr("lo", "10.244.2.1/32").unwrap();
    b.add_addr("lo", "10.244.3.1/32").unwrap();
    let frr = Frr::start(&f, &frr_unnumbered_conf(&fdev));
    let bird_conf = "router id 192.0.2.3;\nprotocol device {}\n\
        protocol kernel { ipv4 { import none; export all; }; }\n\
        protocol static s1 { ipv4; route 10.244.3.0/26 blackhole; }\n\
        protocol bgp twill {\n  local 2001:db8:2::2 as 65003;\n  \
        neighbor 2001:db8:2::1 as 65001;\n  hold time 9;\n  connect retry time 1;\n  \
        ipv4 { extended next hop on; import all; export where source = RTS_STATIC; };\n}\n";
    let bird = Bird::start(&b, bird_conf);
    let conf = |unnumbered: &str| {
        format!(
            "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
             kernel: {{ install: true }}\npeers:\n{unnumbered}\
             - {{ address: \"2001:db8:2::2\", asn: 65003, hold_time: 9, connect_retry: 1, \
             families: [ipv4-unicast], extended_next_hop: true }}\n"
        )
    };
    // BIRD first; the unnumbered peer comes with a reload (`Speaker::set_peers`).
    let twill = Twill::start(&t, &conf(""));
    wait_for(
        "BIRD's IPv4 route in twill's kernel",
        SESSION_TIMEOUT,
        || route_of(&t, "10.244.3.0/26").contains("via inet6 2001:db8:2::2"),
        || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30)),
    );
    twill.reload(&conf(&format!(
        "- {{ interface: \"{tdev}\", asn: 65002, hold_time: 9, connect_retry: 1 }}\n"
    )));
    let ctx = || {
        format!(
            "{}\n{}\ntwill:\n{}\ntwill routes:\n{}\nfrr routes:\n{}\nbird routes:\n{}",
            frr.context(),
            bird.context(),
            twill.guard.log_tail(30),
            twill_routes(&t),
            f.ip(&["-4", "route"]).unwrap_or_default(),
            b.ip(&["-4", "route"]).unwrap_or_default(),
        )
    };
    wait_for(
        "both peers' IPv4 routes in twill's kernel via their IPv6 addresses",
        SESSION_TIMEOUT,
        || {
            route_of(&t, "10.244.2.0/26").contains(&format!("via inet6 {f_ll} dev {tdev}"))
                && route_of(&t, "10.244.3.0/26").contains("via inet6 2001:db8:2::2")
        },
        ctx,
    );
    wait_for(
        "BIRD's route in FRR's kernel via twill's link-local address, FRR's in BIRD's via \
         twill's global IPv6 address",
        SESSION_TIMEOUT,
        || {
            route_of(&f, "10.244.3.0/26").contains(&format!("via inet6 {t_ll} dev {fdev}"))
                && route_of(&b, "10.244.2.0/26").contains("via inet6 2001:db8:2::1")
        },
        ctx,
    );
    wait_for(
        "IPv4 traffic from FRR's address to BIRD's, through twill",
        SESSION_TIMEOUT,
        || pings(&f, "10.244.2.1", "10.244.3.1"),
        ctx,
    );
}
