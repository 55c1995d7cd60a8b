//! RFC 2545 link-local next hops with FRR and BIRD on a shared link: each side sends its
//! global and its link-local next hop (32-octet MP_REACH next hop, read off the wire by
//! tcpdump's decoder), each accepts the other's, and each installs what it chose.

mod support;

use support::peers::{Bird, Frr, bird_conf};
use support::wire::{Capture, link_local_of, only_link};
use support::*;
use twill_harness::netns::Netns;

fn twill_conf(peer: &str, peer_asn: u32) -> String {
    format!(
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
         originate: [\"fd00:244:1::/64\"]\nkernel: {{ install: true }}\n\
         peers: [{{ address: \"{peer}\", asn: {peer_asn}, hold_time: 9, connect_retry: 1, \
         families: [ipv6-unicast] }}]\n"
    )
}

/// Two namespaces on one link: twill holds 2001:db8:1::1, the peer 2001:db8:1::2.
fn shared_link(tag: &str) -> (Netns, Netns, String, String) {
    let (t, p) = linked(tag, &["2001:db8:1::1/64"], &["2001:db8:1::2/64"]);
    let (tdev, pdev) = (only_link(&t), only_link(&p));
    (t, p, tdev, pdev)
}

#[test]
fn frr_and_twill_send_global_and_link_local_next_hops() {
    let (t, f, tdev, fdev) = shared_link("r5f");
    let (t_ll, f_ll) = (link_local_of(&t, &tdev), link_local_of(&f, &fdev));
    assert!(t_ll.starts_with("fe80") && f_ll.starts_with("fe80"));
    let cap = Capture::start(&f, &fdev);
    let conf = "hostname frr\n\
         router bgp 65002\n \
          bgp router-id 192.0.2.2\n \
          no bgp default ipv4-unicast\n \
          no bgp ebgp-requires-policy\n \
          no bgp network import-check\n \
          neighbor 2001:db8:1::1 remote-as 65001\n \
          neighbor 2001:db8:1::1 timers 3 9\n \
          neighbor 2001:db8:1::1 timers connect 1\n \
          address-family ipv6 unicast\n  \
           network fd00:244:2::/64\n  \
           neighbor 2001:db8:1::1 activate\n \
          exit-address-family\n";
    let frr = Frr::start(&f, conf);
    let twill = Twill::start(&t, &twill_conf("2001:db8:1::2", 65002));
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\ntwill routes:\n{}\nfrr routes:\n{}\nwire:\n{}",
            frr.context(),
            twill.guard.log_tail(30),
            twill_routes(&t),
            f.ip(&["-6", "route"]).unwrap_or_default(),
            cap.text()
        )
    };
    wait_for(
        "FRR's route in twill's kernel",
        SESSION_TIMEOUT,
        || twill_routes(&t).contains("fd00:244:2::/64"),
        ctx,
    );
    // FRR prefers the link-local next hop of an eBGP peer on the link: ours, through its
    // interface to us.
    wait_for(
        "twill's route in FRR's kernel via twill's link-local address",
        SESSION_TIMEOUT,
        || route_of(&f, "fd00:244:1::/64").contains(&format!("via {t_ll} dev {fdev}")),
        ctx,
    );
    wait_for(
        "an MP_REACH_NLRI from each side on the wire",
        SESSION_TIMEOUT,
        || {
            !cap.mp_next_hops("2001:db8:1::1", "IPv6").is_empty()
                && !cap.mp_next_hops("2001:db8:1::2", "IPv6").is_empty()
        },
        ctx,
    );
    let twill_sent = cap.mp_next_hops("2001:db8:1::1", "IPv6");
    let frr_sent = cap.mp_next_hops("2001:db8:1::2", "IPv6");
    let want_twill = format!("2001:db8:1::1, {t_ll}, nh-length: 32");
    let want_frr = format!("2001:db8:1::2, {f_ll}, nh-length: 32");
    assert!(
        twill_sent.iter().any(|nh| nh.starts_with(&want_twill)),
        "twill sent {twill_sent:?}\n{}",
        ctx()
    );
    assert!(
        frr_sent.iter().any(|nh| nh.starts_with(&want_frr)),
        "FRR sent {frr_sent:?}\n{}",
        ctx()
    );
    // Twill, given both, installs the global one (BIRD's default, `prefer global`).
    assert!(
        route_of(&t, "fd00:244:2::/64").contains("via 2001:db8:1::2"),
        "{}",
        ctx()
    );
}

#[test]
fn bird_and_twill_send_global_and_link_local_next_hops() {
    let (t, b, tdev, bdev) = shared_link("r5b");
    let (t_ll, b_ll) = (link_local_of(&t, &tdev), link_local_of(&b, &bdev));
    assert!(t_ll.starts_with("fe80") && b_ll.starts_with("fe80"));
    let cap = Capture::start(&b, &bdev);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "2001:db8:1::2",
            65002,
            "2001:db8:1::1",
            65001,
            &["fd00:244:2::/64"],
            "",
        ),
    );
    let twill = Twill::start(&t, &twill_conf("2001:db8:1::2", 65002));
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\ntwill routes:\n{}\nwire:\n{}",
            bird.context(),
            twill.guard.log_tail(30),
            twill_routes(&t),
            cap.text()
        )
    };
    wait_for(
        "routes both ways",
        SESSION_TIMEOUT,
        || {
            twill_routes(&t).contains("fd00:244:2::/64 via 2001:db8:1::2")
                && route_of(&b, "fd00:244:1::/64").contains("via 2001:db8:1::1")
        },
        ctx,
    );
    // BIRD decoded both of our next hops (it shows the pair as BGP.next_hop).
    let shown = bird.birdc(&["show", "route", "all", "fd00:244:1::/64"]);
    assert!(
        shown.contains(&format!("BGP.next_hop: 2001:db8:1::1 {t_ll}")),
        "{shown}\n{}",
        ctx()
    );
    wait_for(
        "an MP_REACH_NLRI from each side on the wire",
        SESSION_TIMEOUT,
        || {
            !cap.mp_next_hops("2001:db8:1::1", "IPv6").is_empty()
                && !cap.mp_next_hops("2001:db8:1::2", "IPv6").is_empty()
        },
        ctx,
    );
    let twill_sent = cap.mp_next_hops("2001:db8:1::1", "IPv6");
    let bird_sent = cap.mp_next_hops("2001:db8:1::2", "IPv6");
    let want_twill = format!("2001:db8:1::1, {t_ll}, nh-length: 32");
    let want_bird = format!("2001:db8:1::2, {b_ll}, nh-length: 32");
    assert!(
        twill_sent.iter().any(|nh| nh.starts_with(&want_twill)),
        "twill sent {twill_sent:?}\n{}",
        ctx()
    );
    assert!(
        bird_sent.iter().any(|nh| nh.starts_with(&want_bird)),
        "BIRD sent {bird_sent:?}\n{}",
        ctx()
    );
}

/// IPv6 routes over an IPv4 session (MP-BGP): the session's address cannot be their next
/// hop, so twill sends its IPv6 addresses on the shared link (global and link-local).
#[test]
fn ipv6_routes_over_an_ipv4_session_with_bird_carry_the_links_ipv6_next_hops() {
    let (t, b) = linked(
        "r5m",
        &["192.0.2.1/24", "2001:db8:1::1/64"],
        &["192.0.2.2/24", "2001:db8:1::2/64"],
    );
    let (tdev, bdev) = (only_link(&t), only_link(&b));
    let t_ll = link_local_of(&t, &tdev);
    link_local_of(&b, &bdev);
    let cap = Capture::start(&b, &bdev);
    let conf = "router id 192.0.2.2;\nprotocol device {}\n\
        protocol kernel { ipv6 { import none; export all; }; }\n\
        protocol static s1 { ipv6; route fd00:244:2::/64 blackhole; }\n\
        protocol bgp twill {\n  local 192.0.2.2 as 65002;\n  \
        neighbor 192.0.2.1 as 65001;\n  hold time 9;\n  connect retry time 1;\n  \
        ipv6 { import all; export where source = RTS_STATIC; };\n}\n";
    let bird = Bird::start(&b, conf);
    let twill = Twill::start(
        &t,
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: \"::\", port: 179 }\n\
         originate: [\"fd00:244:1::/64\"]\nkernel: { install: true }\n\
         peers: [{ address: 192.0.2.2, asn: 65002, hold_time: 9, connect_retry: 1, \
         families: [ipv4-unicast, ipv6-unicast] }]\n",
    );
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\ntwill routes:\n{}\nwire:\n{}",
            bird.context(),
            twill.guard.log_tail(30),
            twill_routes(&t),
            cap.text()
        )
    };
    wait_for(
        "IPv6 routes both ways over the IPv4 session, via the link's IPv6 addresses",
        SESSION_TIMEOUT,
        || {
            twill_routes(&t).contains("fd00:244:2::/64 via 2001:db8:1::2")
                && route_of(&b, "fd00:244:1::/64").contains("via 2001:db8:1::1")
        },
        ctx,
    );
    wait_for(
        "twill's IPv6 MP_REACH_NLRI on the wire",
        SESSION_TIMEOUT,
        || !cap.mp_next_hops("192.0.2.1", "IPv6").is_empty(),
        ctx,
    );
    let twill_sent = cap.mp_next_hops("192.0.2.1", "IPv6");
    assert!(
        twill_sent
            .iter()
            .any(|nh| nh.starts_with(&format!("2001:db8:1::1, {t_ll}, nh-length: 32"))),
        "twill sent {twill_sent:?}\n{}",
        ctx()
    );
}
