//! Session-level features against real BIRD 2 daemons: GTSM (TTL security, RFC 5082) with
//! a GTSM peer and against one that sends ordinary TTLs, and a 2-octet-AS session (BIRD
//! with `enable as4 off`) where 4-octet ASNs travel as AS_TRANS plus AS4_PATH (RFC 6793).

mod support;

use std::time::Duration;

use support::peers::{Bird, bird_conf};
use support::*;

fn twill_yaml(asn: u32, peer_asn: u32, originate: &str, peer_extra: &str) -> String {
    format!(
        "asn: {asn}\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
         originate: [{originate}]\nkernel: {{ install: true }}\npeers:\n\
         - {{ address: 192.0.2.2, asn: {peer_asn}, hold_time: 9, connect_retry: 1, \
         families: [ipv4-unicast]{peer_extra} }}\n"
    )
}

#[test]
fn gtsm_peers_come_up_and_a_peer_sending_low_ttls_never_does() {
    // BIRD with TTL security: it sends TTL 255 and drops anything below.
    let (t, b) = linked("gt", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "ttl security on;",
        ),
    );
    let twill = Twill::start(
        &t,
        &twill_yaml(65001, 65002, "10.244.1.0/26", ", ttl_security: 1"),
    );
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30));
    wait_for(
        "GTSM session, routes both ways",
        SESSION_TIMEOUT,
        || {
            twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2")
                && route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1")
        },
        ctx,
    );

    // A plain eBGP BIRD sends with TTL 1: below 255, every segment of it is dropped.
    // (Passive, so only twill's GTSM socket connects; BIRD answers SYNs with TTL 255 but
    // its session traffic with TTL 1.)
    let (t2, b2) = linked("gx", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let plain = Bird::start(
        &b2,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "passive on;",
        ),
    );
    let twill2 = Twill::start(
        &t2,
        &twill_yaml(65001, 65002, "10.244.1.0/26", ", ttl_security: 1"),
    );
    let ctx2 = || format!("{}\ntwill:\n{}", plain.context(), twill2.guard.log_tail(30));
    // twill keeps trying (it reaches OpenSent: its own segments have TTL 255)...
    wait_for(
        "twill tried to connect",
        SESSION_TIMEOUT,
        || twill2.guard.log().contains("192.0.2.2") || !twill2.peers().is_empty(),
        ctx2,
    );
    holds_for(
        "no session with a peer whose packets arrive with TTL 1",
        Duration::from_secs(6),
        || {
            !twill2.established("192.0.2.2")
                && !plain.established("twill")
                && twill_routes(&t2).is_empty()
        },
        ctx2,
    );
}

#[test]
fn a_two_octet_as_peer_gets_and_gives_four_octet_paths_through_as4_path() {
    // twill (AS 65001) between BIRD "old" (AS 65002, 2-octet ASNs only on this session)
    // and BIRD "new" (AS 4200000003, 4-octet). Paths with 4-octet ASNs cross the old
    // session as AS_TRANS in AS_PATH plus the real path in AS4_PATH, both ways.
    let t = twill_harness::netns::Netns::new("twa4").unwrap();
    let old_ns = spoke("a4old", &t, &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let new_ns = spoke("a4new", &t, &["198.51.100.1/24"], &["198.51.100.2/24"]);
    // Old BIRD's static leaves with a 4-octet ASN prepended: [65002 4200000099].
    let old_conf = "router id 192.0.2.2;\nprotocol device {}\n\
        protocol static s1 { ipv4; route 10.244.2.0/26 blackhole; }\n\
        protocol bgp twill {\n  local 192.0.2.2 as 65002;\n  neighbor 192.0.2.1 as 65001;\n\
          enable as4 off;\n  hold time 9;\n  connect retry time 1;\n\
          ipv4 { import all; export filter { if source = RTS_STATIC then { \
          bgp_path.prepend(4200000099); accept; } reject; }; };\n}\n";
    let old = Bird::start(&old_ns, old_conf);
    let new = Bird::start(
        &new_ns,
        &bird_conf(
            "198.51.100.2",
            "198.51.100.2",
            4_200_000_003,
            "198.51.100.1",
            65001,
            &["10.244.3.0/26"],
            "",
        ),
    );
    let twill = Twill::start(
        &t,
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: \"::\", port: 179 }\n\
         kernel: { install: true }\npeers:\n\
         - { address: 192.0.2.2, asn: 65002, hold_time: 9, connect_retry: 1 }\n\
         - { address: 198.51.100.2, asn: 4200000003, hold_time: 9, connect_retry: 1 }\n",
    );
    let ctx = || {
        format!(
            "{}\n{}\ntwill:\n{}",
            old.context(),
            new.context(),
            twill.guard.log_tail(30)
        )
    };
    wait_for(
        "both sessions and the routes",
        SESSION_TIMEOUT,
        || {
            let r = twill_routes(&t);
            r.contains("10.244.2.0/26 via 192.0.2.2")
                && r.contains("10.244.3.0/26 via 198.51.100.2")
                && old
                    .birdc(&["show", "route", "10.244.3.0/26"])
                    .contains("10.244.3.0/26")
        },
        ctx,
    );
    // The old session really is 2-octet (BIRD lists "AS4" among the session flags if not).
    let proto = old.birdc(&["show", "protocols", "all", "twill"]);
    let session = proto
        .lines()
        .find(|l| l.trim_start().starts_with("Session:"))
        .unwrap_or_default();
    assert!(
        session.contains("external") && !session.contains("AS4"),
        "{proto}"
    );
    // twill rebuilt the 4-octet path from the old peer's AS_PATH + AS4_PATH.
    let routes = twill.loc_rib("10.244.2.0/26");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0].as_path, "65002 4200000099", "{routes:?}");
    // ...and passes it on to the 4-octet peer intact.
    let shown = new.birdc(&["show", "route", "10.244.2.0/26", "all"]);
    assert!(
        shown.contains("BGP.as_path: 65001 65002 4200000099"),
        "{shown}"
    );
    // The old peer got AS_TRANS plus AS4_PATH for the new peer's route, and merged them.
    let shown = old.birdc(&["show", "route", "10.244.3.0/26", "all"]);
    assert!(shown.contains("BGP.as_path: 65001 4200000003"), "{shown}");
}

#[test]
fn filter_changes_on_sighup_use_route_refresh_and_keep_the_session() {
    let (t, b) = linked("pf", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26", "10.244.3.0/26"],
            "",
        ),
    );
    let yaml = |filtered: bool| {
        let refs = if filtered {
            ", import: [no3], export: [no9]"
        } else {
            ""
        };
        format!(
            "{}filters:\n  no3:\n    import_v4: [{{ action: Reject, match_operator: Equal, cidr: 10.244.3.0/26 }}]\n\
             \x20 no9:\n    export_v4: [{{ action: Reject, cidr: 10.244.9.0/24 }}]\n",
            twill_yaml(65001, 65002, "10.244.1.0/26, 10.244.9.0/26", refs)
        )
    };
    let twill = Twill::start(&t, &yaml(false));
    let ctx = || {
        format!(
            "{}\ntwill:\n{}\nroutes:\n{}",
            bird.context(),
            twill.guard.log_tail(30),
            twill_routes(&t)
        )
    };
    let both_ways = |with3: bool, with9: bool| {
        let r = twill_routes(&t);
        r.contains("10.244.2.0/26")
            && r.contains("10.244.3.0/26") == with3
            && route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1")
            && route_of(&b, "10.244.9.0/26").contains("via 192.0.2.1") == with9
    };
    wait_for(
        "routes both ways",
        SESSION_TIMEOUT,
        || both_ways(true, true),
        ctx,
    );
    let since = bird.birdc(&["show", "protocols", "twill"]);

    // Filters on: the import change drops BIRD's 10.244.3.0/26 (twill asks for BIRD's
    // routes again), the export change withdraws twill's 10.244.9.0/26.
    twill.reload(&yaml(true));
    wait_for(
        "filtered both ways",
        SESSION_TIMEOUT,
        || both_ways(false, false),
        ctx,
    );
    // Filters off: 10.244.3.0/26 can only come back if twill sends ROUTE-REFRESH, since
    // BIRD has no reason to announce it again otherwise.
    twill.reload(&yaml(false));
    wait_for(
        "unfiltered again",
        SESSION_TIMEOUT,
        || both_ways(true, true),
        ctx,
    );
    assert!(twill.log().contains("route refresh"), "{}", ctx());
    assert_eq!(
        since,
        bird.birdc(&["show", "protocols", "twill"]),
        "the session must survive policy changes\n{}",
        ctx()
    );
}
