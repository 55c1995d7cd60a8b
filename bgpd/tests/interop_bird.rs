//! twill-bgpd against a real BIRD 2, each in its own network namespace: eBGP IPv4 routes
//! both ways into both kernels, withdraws both ways, SIGHUP reloads (a new peer, a
//! withdrawn prefix, a bad file refused) that keep the unchanged session, and SIGTERM
//! sending Cease.

mod support;

use std::time::Duration;

use support::peers::Bird;
use support::*;

fn twill_yaml(originate: &str) -> String {
    twill_yaml_with(originate, "")
}

fn twill_yaml_with(originate: &str, more_peers: &str) -> String {
    format!(
        r#"
asn: 65001
router_id: 192.0.2.1
listen: {{ address: 0.0.0.0, port: 179 }}
originate: [{originate}]
kernel: {{ install: true }}
peers:
  - address: 192.0.2.2
    asn: 65002
    hold_time: 9
    connect_retry: 1
    families: [ipv4-unicast]
{more_peers}"#
    )
}

const BIRD_CONF: &str = r#"
router id 192.0.2.2;
protocol device {}
protocol kernel { ipv4 { import none; export all; }; }
protocol static s1 { ipv4; route 10.244.2.0/26 blackhole; }
protocol static s2 { ipv4; route 10.244.3.0/26 blackhole; }
protocol bgp twill {
  local 192.0.2.2 as 65002;
  neighbor 192.0.2.1 as 65001;
  hold time 9;
  connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; };
}
"#;

#[test]
fn ebgp_ipv4_routes_flow_both_ways_and_withdraw() {
    let (t, b) = linked("bi", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(&b, BIRD_CONF);
    let mut twill = Twill::start(&t, &twill_yaml("10.244.1.0/26, 10.244.9.0/26"));
    let ctx = || {
        format!(
            "{}\ntwill log:\n{}\ntwill routes:\n{}",
            bird.context(),
            twill.guard.log_tail(40),
            twill_routes(&t)
        )
    };

    wait_for(
        "BIRD session Established",
        SESSION_TIMEOUT,
        || bird.established("twill"),
        ctx,
    );

    // BIRD → twill → twill's kernel.
    wait_for(
        "BIRD's statics in twill's kernel",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("10.244.2.0/26 via 192.0.2.2") && r.contains("10.244.3.0/26 via 192.0.2.2")
        },
        ctx,
    );
    // twill → BIRD → BIRD's kernel.
    wait_for(
        "twill's prefixes in BIRD's kernel",
        SESSION_TIMEOUT,
        || {
            route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1")
                && route_of(&b, "10.244.9.0/26").contains("via 192.0.2.1")
        },
        ctx,
    );
    let as_path = bird.birdc(&["show", "route", "10.244.1.0/26", "all"]);
    assert!(as_path.contains("BGP.as_path: 65001"), "{as_path}");

    // BIRD withdraws one of its routes.
    let out = bird.birdc(&["disable", "s2"]);
    assert!(out.contains("disabled"), "{out}");
    wait_for(
        "BIRD's withdrawn route leaves twill's kernel",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("10.244.3.0/26"),
        ctx,
    );
    assert!(twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2"));

    // A SIGHUP reload withdraws one of twill's prefixes and adds a peer; the unchanged
    // session with BIRD stays up throughout.
    let since_before = bird.birdc(&["show", "protocols", "twill"]);
    let new_peer = "  - { address: 192.0.2.9, asn: 65009, passive: true }\n";
    twill.reload(&twill_yaml_with("10.244.1.0/26", new_peer));
    wait_for(
        "twill's withdrawn prefix leaves BIRD's kernel",
        SESSION_TIMEOUT,
        || route_of(&b, "10.244.9.0/26").is_empty(),
        ctx,
    );
    wait_for(
        "the new peer is configured",
        SESSION_TIMEOUT,
        || twill.peers().iter().any(|p| p.address == "192.0.2.9"),
        ctx,
    );
    assert!(route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1"));
    // A bad file is refused: the running configuration (both peers) stays.
    twill.reload("asn: 65001\nrouter_id: 192.0.2.1\npeers: [{ address: 192.0.2.2, asn: 0 }]\n");
    wait_for(
        "the refused reload is logged with the field",
        SESSION_TIMEOUT,
        || twill.log().contains("peers[0].asn"),
        ctx,
    );
    assert_eq!(twill.peers().len(), 2, "{}", ctx());
    assert!(twill.established("192.0.2.2"), "{}", ctx());
    let since_after = bird.birdc(&["show", "protocols", "twill"]);
    assert_eq!(
        since_before, since_after,
        "the reloads must not reset the unchanged session"
    );

    // SIGTERM: twill sends Cease and exits; BIRD drops the routes; ours stay in the kernel.
    twill
        .guard
        .signal(nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = twill.guard.wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "twill-bgpd exit: {status:?}"
    );
    wait_for(
        "BIRD sees the Cease",
        SESSION_TIMEOUT,
        || {
            let s = bird.birdc(&["show", "protocols", "all", "twill"]);
            s.contains("Administrative shutdown") || s.contains("Received: Administrative")
        },
        || bird.context(),
    );
    wait_for(
        "BIRD drops twill's routes",
        SESSION_TIMEOUT,
        || route_of(&b, "10.244.1.0/26").is_empty(),
        || bird.context(),
    );
    assert!(
        twill_routes(&t).contains("10.244.2.0/26"),
        "kernel routes stay after a clean stop: {}",
        twill_routes(&t)
    );
}
