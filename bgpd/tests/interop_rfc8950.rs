//! RFC 8950 extended next hop with FRR and BIRD: an IPv6-only link (no IPv4 address on
//! it), IPv4 unicast routes carried over the IPv6 session with IPv6 next hops both ways
//! (read off the wire by tcpdump's decoder), installed as `via inet6` routes, and IPv4
//! traffic between addresses behind each side.

#![allow(clippy::unwrap_used)]

mod support;

use support::peers::{Bird, Frr};
use support::wire::{Capture, link_local_of, only_link};
use support::*;
use twill_harness::netns::Netns;

fn twill_conf(peer_asn: u32) -> String {
    format!(
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
         originate: [\"10.244.1.0/26\"]\nkernel: {{ install: true }}\n\
         peers: [{{ address: \"2001:db8:1::2\", asn: {peer_asn}, hold_time: 9, \
         connect_retry: 1, families: [ipv4-unicast], extended_next_hop: true }}]\n"
    )
}

/// An IPv6-only link: twill 2001:db8:1::1, the peer 2001:db8:1::2; IPv4 addresses only
/// behind each side (on lo): 10.244.1.1 at twill, 10.244.2.1 at the peer.
fn ipv6_only_link(tag: &str) -> (Netns, Netns, String, String) {
    let (t, p) = linked(tag, &["2001:db8:1::1/64"], &["2001:db8:1::2/64"]);
    t.add_addr("lo", "10.244.1.1/32").unwrap();
    p.add_addr("lo", "10.244.2.1/32").unwrap();
    for ns in [&t, &p] {
        ns.enable_forwarding().unwrap();
    }
    let (tdev, pdev) = (only_link(&t), only_link(&p));
    (t, p, tdev, pdev)
}

/// IPv4 pings from the address behind one side to the one behind the other get answers.
fn pings(from: &Netns, src: &str, dst: &str) -> bool {
    from.exec("ping", &["-c", "1", "-W", "1", "-I", src, dst])
        .is_ok_and(|o| o.contains(" 0% packet loss"))
}

/// Both sides' MP_REACH_NLRI of AFI IPv4 on the wire: twill's and the peer's next hops.
fn ipv4_mp_next_hops(cap: &Capture) -> (Vec<String>, Vec<String>) {
    (
        cap.mp_next_hops("2001:db8:1::1", "IPv4"),
        cap.mp_next_hops("2001:db8:1::2", "IPv4"),
    )
}

#[test]
fn frr_ipv4_routes_with_ipv6_next_hops_both_ways() {
    let (t, f, tdev, fdev) = ipv6_only_link("x8f");
    let t_ll = link_local_of(&t, &tdev);
    link_local_of(&f, &fdev);
    let cap = Capture::start(&f, &fdev);
    let conf = "hostname frr\n\
         router bgp 65002\n \
          bgp router-id 192.0.2.2\n \
          no bgp ebgp-requires-policy\n \
          no bgp network import-check\n \
          neighbor 2001:db8:1::1 remote-as 65001\n \
          neighbor 2001:db8:1::1 capability extended-nexthop\n \
          neighbor 2001:db8:1::1 timers 3 9\n \
          neighbor 2001:db8:1::1 timers connect 1\n \
          address-family ipv4 unicast\n  \
           network 10.244.2.0/26\n  \
           neighbor 2001:db8:1::1 activate\n \
          exit-address-family\n";
    let frr = Frr::start(&f, conf);
    let twill = Twill::start(&t, &twill_conf(65002));
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\ntwill routes:\n{}\nfrr routes:\n{}\nwire:\n{}",
            frr.context(),
            twill.guard.log_tail(30),
            twill_routes(&t),
            f.ip(&["-4", "route"]).unwrap_or_default(),
            cap.text()
        )
    };
    wait_for(
        "FRR's IPv4 route in twill's kernel via FRR's IPv6 address",
        SESSION_TIMEOUT,
        || route_of(&t, "10.244.2.0/26").contains("via inet6 2001:db8:1::2"),
        ctx,
    );
    wait_for(
        "twill's IPv4 route in FRR's kernel via twill's IPv6 link-local address",
        SESSION_TIMEOUT,
        || route_of(&f, "10.244.1.0/26").contains(&format!("via inet6 {t_ll} dev {fdev}")),
        ctx,
    );
    wait_for(
        "an IPv4 MP_REACH_NLRI from each side on the wire",
        SESSION_TIMEOUT,
        || {
            let (a, b) = ipv4_mp_next_hops(&cap);
            !a.is_empty() && !b.is_empty()
        },
        ctx,
    );
    let (twill_sent, frr_sent) = ipv4_mp_next_hops(&cap);
    assert!(
        twill_sent
            .iter()
            .any(|nh| nh.starts_with(&format!("2001:db8:1::1, {t_ll}, nh-length: 32"))),
        "twill sent {twill_sent:?}\n{}",
        ctx()
    );
    assert!(
        frr_sent.iter().any(|nh| nh.starts_with("2001:db8:1::2")),
        "FRR sent {frr_sent:?}\n{}",
        ctx()
    );
    wait_for(
        "IPv4 traffic between the addresses behind each side",
        SESSION_TIMEOUT,
        || pings(&t, "10.244.1.1", "10.244.2.1"),
        ctx,
    );
}

#[test]
fn bird_ipv4_routes_with_ipv6_next_hops_both_ways() {
    let (t, b, tdev, bdev) = ipv6_only_link("x8b");
    let t_ll = link_local_of(&t, &tdev);
    link_local_of(&b, &bdev);
    let cap = Capture::start(&b, &bdev);
    let conf = "router id 192.0.2.2;\nprotocol device {}\n\
        protocol kernel { ipv4 { import none; export all; }; }\n\
        protocol static s1 { ipv4; route 10.244.2.0/26 blackhole; }\n\
        protocol bgp twill {\n  local 2001:db8:1::2 as 65002;\n  \
        neighbor 2001:db8:1::1 as 65001;\n  hold time 9;\n  connect retry time 1;\n  \
        ipv4 { extended next hop on; import all; export where source = RTS_STATIC; };\n}\n";
    let bird = Bird::start(&b, conf);
    let twill = Twill::start(&t, &twill_conf(65002));
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\ntwill routes:\n{}\nbird routes:\n{}\nwire:\n{}",
            bird.context(),
            twill.guard.log_tail(30),
            twill_routes(&t),
            b.ip(&["-4", "route"]).unwrap_or_default(),
            cap.text()
        )
    };
    wait_for(
        "BIRD's IPv4 route in twill's kernel via BIRD's IPv6 address",
        SESSION_TIMEOUT,
        || route_of(&t, "10.244.2.0/26").contains("via inet6 2001:db8:1::2"),
        ctx,
    );
    wait_for(
        "twill's IPv4 route in BIRD's kernel via twill's IPv6 address",
        SESSION_TIMEOUT,
        || route_of(&b, "10.244.1.0/26").contains("via inet6 2001:db8:1::1"),
        ctx,
    );
    let shown = bird.birdc(&["show", "route", "all", "10.244.1.0/26"]);
    assert!(
        shown.contains(&format!("BGP.next_hop: 2001:db8:1::1 {t_ll}")),
        "{shown}\n{}",
        ctx()
    );
    wait_for(
        "an IPv4 MP_REACH_NLRI from each side on the wire",
        SESSION_TIMEOUT,
        || {
            let (a, b) = ipv4_mp_next_hops(&cap);
            !a.is_empty() && !b.is_empty()
        },
        ctx,
    );
    let (twill_sent, bird_sent) = ipv4_mp_next_hops(&cap);
    assert!(
        twill_sent
            .iter()
            .any(|nh| nh.starts_with(&format!("2001:db8:1::1, {t_ll}, nh-length: 32"))),
        "twill sent {twill_sent:?}\n{}",
        ctx()
    );
    assert!(
        bird_sent.iter().any(|nh| nh.starts_with("2001:db8:1::2")),
        "BIRD sent {bird_sent:?}\n{}",
        ctx()
    );
    // BIRD's route to 10.244.1.0/26 is a blackhole-free IPv6 gateway: ping through it.
    // (BIRD's own 10.244.2.0/26 is a blackhole, so ping its address on lo instead.)
    wait_for(
        "IPv4 traffic between the addresses behind each side",
        SESSION_TIMEOUT,
        || pings(&b, "10.244.2.1", "10.244.1.1"),
        ctx,
    );
}
