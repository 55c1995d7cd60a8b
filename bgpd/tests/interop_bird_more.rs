//! twill-bgpd against real BIRD 2 daemons: IPv6, iBGP with graceful restart, TCP-MD5,
//! route refresh, max-prefix, ECMP across two peers with a 4-octet ASN, and route
//! reflection for two clients.

mod support;

use std::time::Duration;

use support::peers::{Bird, bird_conf};
use support::*;
use twill_harness::netns::Netns;

fn peer_yaml(address: &str, asn: u32, extra: &str) -> String {
    format!(
        "  - address: {address}\n    asn: {asn}\n    hold_time: 9\n    connect_retry: 1\n{extra}"
    )
}

fn twill_yaml(asn: u32, router_id: &str, originate: &str, top: &str, peers: &[String]) -> String {
    format!(
        "asn: {asn}\nrouter_id: {router_id}\nlisten: {{ address: \"::\", port: 179 }}\noriginate: [{originate}]\nkernel: {{ install: true }}\n{top}\npeers:\n{}",
        peers.join("")
    )
}

#[test]
fn ipv6_ebgp_routes_flow_both_ways() {
    let (t, b) = linked("b6", &["fd00:1::1/64"], &["fd00:1::2/64"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "fd00:1::2",
            65002,
            "fd00:1::1",
            65001,
            &["fd00:244:2::/64"],
            "",
        ),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "\"fd00:244:1::/64\"",
            "",
            &[peer_yaml(
                "fd00:1::2",
                65002,
                "    families: [ipv6-unicast]\n",
            )],
        ),
    );
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30));
    wait_for(
        "IPv6 session",
        SESSION_TIMEOUT,
        || bird.established("twill"),
        ctx,
    );
    wait_for(
        "BIRD's IPv6 prefix in twill's kernel",
        SESSION_TIMEOUT,
        || twill_routes(&t).contains("fd00:244:2::/64 via fd00:1::2"),
        ctx,
    );
    wait_for(
        "twill's IPv6 prefix in BIRD's kernel",
        SESSION_TIMEOUT,
        || route_of(&b, "fd00:244:1::/64").contains("via fd00:1::1"),
        ctx,
    );
    // BIRD sends a link-local next hop beside the global one; we decoded and kept the global.
    let shown = bird.birdc(&["show", "route", "export", "twill", "all"]);
    assert!(shown.contains("fd00:244:2::/64"), "{shown}");
}

#[test]
fn ibgp_graceful_restart_keeps_routes_until_the_peer_returns() {
    let (t, b) = linked("gr", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let conf = |statics: &[&str]| {
        bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65001,
            "192.0.2.1",
            65001,
            statics,
            "graceful restart on;",
        )
    };
    let mut bird = Bird::start(&b, &conf(&["10.244.2.0/26", "10.244.3.0/26"]));
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "10.244.1.0/26",
            "",
            &[peer_yaml("192.0.2.2", 65001, "")],
        ),
    );
    wait_for(
        "iBGP routes in twill's kernel",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("10.244.2.0/26 via 192.0.2.2") && r.contains("10.244.3.0/26 via 192.0.2.2")
        },
        || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30)),
    );
    // BIRD dies without a NOTIFICATION: its routes stay (stale) in twill's kernel.
    bird.guard.kill().unwrap();
    holds_for(
        "stale routes kept during the restart",
        Duration::from_secs(4),
        || twill_routes(&t).contains("10.244.3.0/26 via 192.0.2.2"),
        || twill.guard.log_tail(30),
    );
    let from_bird = |routes: Vec<twill_proto::bgp::Route>| -> Vec<_> {
        routes
            .into_iter()
            .filter(|r| r.from_peer == "192.0.2.2")
            .collect()
    };
    let kept = from_bird(twill.loc_rib("10.244.0.0/16"));
    assert!(
        kept.len() == 2 && kept.iter().all(|r| r.stale),
        "both paths kept, marked stale: {kept:?}"
    );
    // BIRD comes back without 10.244.3.0/26: after its End-of-RIB the stale one goes.
    let bird2 = Bird::start(&b, &conf(&["10.244.2.0/26"]));
    let ctx = || format!("{}\ntwill:\n{}", bird2.context(), twill.guard.log_tail(30));
    wait_for(
        "session back",
        SESSION_TIMEOUT,
        || bird2.established("twill"),
        ctx,
    );
    wait_for(
        "stale route swept after End-of-RIB",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("10.244.3.0/26"),
        ctx,
    );
    assert!(
        twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2"),
        "{}",
        ctx()
    );
    // The path BIRD announced again is fresh, no longer stale.
    let fresh = from_bird(twill.loc_rib("10.244.0.0/16"));
    assert!(
        fresh.len() == 1 && fresh[0].prefix == "10.244.2.0/26" && !fresh[0].stale,
        "{fresh:?}"
    );
    drop(bird);
}

#[test]
fn md5_with_the_right_password_comes_up() {
    let (t, b) = linked("m5", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "password \"s3cret-key\";",
        ),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "",
            "",
            &[peer_yaml("192.0.2.2", 65002, "    password: s3cret-key\n")],
        ),
    );
    wait_for(
        "MD5 session Established",
        SESSION_TIMEOUT,
        || bird.established("twill") && twill_routes(&t).contains("10.244.2.0/26"),
        || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30)),
    );
}

#[test]
fn md5_with_a_wrong_password_never_comes_up() {
    let (t, b) = linked("mx", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "password \"other-key\";",
        ),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "",
            "",
            &[peer_yaml("192.0.2.2", 65002, "    password: s3cret-key\n")],
        ),
    );
    // Both sides keep trying (connect retry 1 s) for the whole window.
    holds_for(
        "no session with mismatched MD5 keys",
        Duration::from_secs(8),
        || !bird.established("twill") && twill_routes(&t).is_empty(),
        || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30)),
    );
}

#[test]
fn route_refresh_request_gets_the_table_again() {
    let (t, b) = linked("rr", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf("192.0.2.2", "192.0.2.2", 65002, "192.0.2.1", 65001, &[], ""),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "10.244.1.0/26, 10.244.1.64/26",
            "",
            &[peer_yaml("192.0.2.2", 65002, "")],
        ),
    );
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30));
    wait_for(
        "both prefixes at BIRD",
        SESSION_TIMEOUT,
        || bird.import_updates_received("twill") >= 2,
        ctx,
    );
    let before = bird.import_updates_received("twill");
    let out = bird.birdc(&["reload", "in", "twill"]);
    assert!(out.contains("reload"), "{out}");
    wait_for(
        "twill answers ROUTE-REFRESH with its table",
        SESSION_TIMEOUT,
        || bird.import_updates_received("twill") >= before + 2,
        ctx,
    );
}

#[test]
fn max_prefix_exceeded_sends_cease_and_drops_the_peers_routes() {
    let (t, b) = linked("mp", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26", "10.244.3.0/26", "10.244.4.0/26"],
            "",
        ),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "",
            "",
            &[peer_yaml("192.0.2.2", 65002, "    max_prefixes: 2\n")],
        ),
    );
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30));
    wait_for(
        "BIRD receives Cease / maximum prefixes",
        SESSION_TIMEOUT,
        || {
            bird.birdc(&["show", "protocols", "all", "twill"])
                .contains("Maximum number of prefixes reached")
        },
        ctx,
    );
    holds_for(
        "the session stays down and no route of the peer is installed",
        Duration::from_secs(4),
        || !bird.established("twill") && twill_routes(&t).is_empty(),
        ctx,
    );
}

#[test]
fn two_peers_with_the_same_prefix_make_one_multipath_route_with_a_4_octet_asn() {
    let t = Netns::new("twecmp").unwrap();
    let b1 = spoke("ecmp1", &t, &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let b2 = spoke("ecmp2", &t, &["198.51.100.1/24"], &["198.51.100.2/24"]);
    let asn = 4_200_000_001u32;
    let bird1 = Bird::start(
        &b1,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            asn,
            &["10.244.5.0/26"],
            "",
        ),
    );
    let bird2 = Bird::start(
        &b2,
        &bird_conf(
            "198.51.100.2",
            "198.51.100.2",
            65003,
            "198.51.100.1",
            asn,
            &["10.244.5.0/26"],
            "",
        ),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(
            asn,
            "192.0.2.1",
            "10.244.1.0/26",
            "",
            &[
                peer_yaml("192.0.2.2", 65002, ""),
                peer_yaml("198.51.100.2", 65003, ""),
            ],
        ),
    );
    let ctx = || {
        format!(
            "{}\n{}\ntwill:\n{}\nroute:\n{}",
            bird1.context(),
            bird2.context(),
            twill.guard.log_tail(30),
            route_of(&t, "10.244.5.0/26")
        )
    };
    wait_for(
        "one route with both next hops",
        SESSION_TIMEOUT,
        || {
            let r = route_of(&t, "10.244.5.0/26");
            r.contains("proto 82")
                && r.contains("nexthop via 192.0.2.2")
                && r.contains("nexthop via 198.51.100.2")
        },
        ctx,
    );
    // The 4-octet ASN reached both peers' AS paths.
    let shown = bird1.birdc(&["show", "route", "10.244.1.0/26", "all"]);
    assert!(shown.contains("BGP.as_path: 4200000001"), "{shown}");
    // One peer withdraws: the route falls back to the other next hop alone.
    bird2.birdc(&["disable", "s1"]);
    wait_for(
        "single next hop after one withdraw",
        SESSION_TIMEOUT,
        || {
            let r = route_of(&t, "10.244.5.0/26");
            r.contains("via 192.0.2.2") && !r.contains("198.51.100.2")
        },
        ctx,
    );
}

#[test]
fn route_reflector_lets_two_clients_learn_each_others_routes() {
    let t = Netns::new("twrr").unwrap();
    let c1 = spoke("rrc1", &t, &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let c2 = spoke("rrc2", &t, &["198.51.100.1/24"], &["198.51.100.2/24"]);
    let bird1 = Bird::start(
        &c1,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65001,
            "192.0.2.1",
            65001,
            &["10.244.11.0/26"],
            "direct; channel gateway direct;",
        ),
    );
    let bird2 = Bird::start(
        &c2,
        &bird_conf(
            "198.51.100.2",
            "198.51.100.2",
            65001,
            "198.51.100.1",
            65001,
            &["10.244.12.0/26"],
            "direct; channel gateway direct;",
        ),
    );
    let client = "    route_reflector_client: true\n    next_hop_self: true\n";
    let twill = Twill::start(
        &t,
        &twill_yaml(
            65001,
            "192.0.2.1",
            "",
            "route_reflector: { cluster_id: 192.0.2.1 }",
            &[
                peer_yaml("192.0.2.2", 65001, client),
                peer_yaml("198.51.100.2", 65001, client),
            ],
        ),
    );
    let ctx = || {
        format!(
            "{}\n{}\ntwill:\n{}",
            bird1.context(),
            bird2.context(),
            twill.guard.log_tail(30)
        )
    };
    wait_for(
        "client 1 learns client 2's route (kernel)",
        SESSION_TIMEOUT,
        || route_of(&c1, "10.244.12.0/26").contains("via 192.0.2.1"),
        ctx,
    );
    wait_for(
        "client 2 learns client 1's route (kernel)",
        SESSION_TIMEOUT,
        || route_of(&c2, "10.244.11.0/26").contains("via 198.51.100.1"),
        ctx,
    );
    let shown = bird1.birdc(&["show", "route", "10.244.12.0/26", "all"]);
    assert!(shown.contains("BGP.originator_id: 198.51.100.2"), "{shown}");
    assert!(shown.contains("BGP.cluster_list: 192.0.2.1"), "{shown}");
}

#[test]
fn twill_restart_keeps_forwarding_and_reconciles_the_kernel() {
    // BIRD is a graceful-restart helper: while twill restarts it keeps twill's route.
    let (t, b) = linked("rs", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26", "10.244.3.0/26"],
            "graceful restart on;",
        ),
    );
    let yaml = twill_yaml(
        65001,
        "192.0.2.1",
        "10.244.1.0/26",
        "",
        &[peer_yaml("192.0.2.2", 65002, "")],
    );
    let mut twill = Twill::start(&t, &yaml);
    let ctx = || format!("{}\nroutes:\n{}", bird.context(), twill_routes(&t));
    wait_for(
        "routes installed both ways",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("10.244.2.0/26 via 192.0.2.2")
                && r.contains("10.244.3.0/26 via 192.0.2.2")
                && route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1")
        },
        ctx,
    );
    // Crash: nothing removes our kernel routes, and no NOTIFICATION goes out.
    twill.guard.kill().unwrap();
    // While twill is down, BIRD stops announcing one route.
    bird.birdc(&["disable", "s2"]);
    holds_for(
        "BIRD keeps twill's route (stale) while twill is down",
        Duration::from_secs(2),
        || route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1"),
        ctx,
    );
    let twill2 = Twill::start(&t, &yaml);
    let ctx2 = || {
        format!(
            "{}\nroutes:\n{}\ntwill:\n{}",
            bird.context(),
            twill_routes(&t),
            twill2.guard.log_tail(30)
        )
    };
    // Forwarding never stops on either side; the stale route is removed from twill's
    // kernel once BIRD's table (End-of-RIB) is in.
    let start = std::time::Instant::now();
    loop {
        let r = twill_routes(&t);
        assert!(
            r.contains("10.244.2.0/26 via 192.0.2.2"),
            "route lost during restart\n{}",
            ctx2()
        );
        assert!(
            route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1"),
            "BIRD dropped twill's route during the restart\n{}",
            ctx2()
        );
        if !r.contains("10.244.3.0/26") && bird.established("twill") {
            break;
        }
        assert!(
            start.elapsed() < SESSION_TIMEOUT,
            "never reconciled\n{}",
            ctx2()
        );
        std::thread::sleep(POLL);
    }
    // twill told BIRD it restarted (R bit) with its forwarding state kept (F bit).
    let proto = bird.birdc(&["show", "protocols", "all", "twill"]);
    let neighbor = proto
        .split("Neighbor capabilities")
        .nth(1)
        .unwrap_or_default();
    assert!(
        neighbor.contains("Restart recovery") && neighbor.contains("AF preserved: ipv4 ipv6"),
        "{proto}"
    );
}

#[test]
fn after_a_restart_the_kernel_is_right_as_soon_as_the_last_end_of_rib_is_in() {
    // Three crashes; each time BIRD changes its table while twill is down. The kernel
    // must match BIRD's table right after the session's End-of-RIB, not on a timer: a
    // one-second tick would leave it wrong for up to a second.
    let (t, b) = linked("rq", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26", "10.244.3.0/26"],
            "graceful restart on;",
        ),
    );
    let yaml = twill_yaml(
        65001,
        "192.0.2.1",
        "10.244.1.0/26",
        "",
        &[peer_yaml("192.0.2.2", 65002, "")],
    );
    let mut twill = Twill::start(&t, &yaml);
    wait_for(
        "routes installed",
        SESSION_TIMEOUT,
        || twill_routes(&t).contains("10.244.3.0/26 via 192.0.2.2"),
        || twill_routes(&t),
    );
    let mut lags = Vec::new();
    for round in 0..3 {
        twill.guard.kill().unwrap();
        // Even rounds: BIRD drops 10.244.3.0/26 (stale in our kernel); odd: it returns.
        let present = round % 2 == 1;
        bird.birdc(&[if present { "enable" } else { "disable" }, "s2"]);
        twill = Twill::start(&t, &yaml);
        let right = |r: &str| r.contains("10.244.3.0/26") == present;
        let start = std::time::Instant::now();
        let mut up_at = None;
        loop {
            if up_at.is_none() && twill.established("192.0.2.2") {
                up_at = Some(std::time::Instant::now());
            }
            if let Some(up) = up_at
                && right(&twill_routes(&t))
            {
                lags.push(up.elapsed());
                break;
            }
            assert!(
                start.elapsed() < SESSION_TIMEOUT,
                "round {round}: never right\n{}\n{}",
                twill_routes(&t),
                twill.guard.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    eprintln!("kernel right after Established: {lags:?}");
    assert!(
        lags.iter().all(|l| *l < Duration::from_millis(300)),
        "kernel right only {lags:?} after the session came back"
    );
}
