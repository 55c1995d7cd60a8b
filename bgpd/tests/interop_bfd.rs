//! BFD against real peers: BIRD 2's `protocol bfd` and FRR's bfdd, single-hop, 100 ms × 3.
//! The session comes Up and both sides agree on the intervals; a peer that hangs
//! takes the BGP session and its routes down within about the detection time, and BGP
//! stays down until BFD is Up again; malformed packets, packets with TTL < 255 and
//! packets for unknown discriminators are dropped and counted without the session moving.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::peers::{Bird, Frr, bird_conf};
use support::*;
use twill_harness::netns::Netns;

const BFD_BIRD: &str = "protocol bfd {\n  interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };\n}\n";

fn bird_with_bfd() -> String {
    bird_conf(
        "192.0.2.2",
        "192.0.2.2",
        65002,
        "192.0.2.1",
        65001,
        &["10.244.2.0/26"],
        "bfd on;",
    ) + BFD_BIRD
}

fn twill_yaml(bfd: &str) -> String {
    format!(
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: 0.0.0.0, port: 179 }}\n\
         originate: [10.244.1.0/26]\nkernel: {{ install: true }}\npeers:\n\
         - {{ address: 192.0.2.2, asn: 65002, hold_time: 90, connect_retry: 1, \
         families: [ipv4-unicast], bfd: {bfd} }}\n"
    )
}

const FAST: &str = "{ receive_interval_ms: 100, transmit_interval_ms: 100, detect_multiplier: 3 }";

fn bfd_of(twill: &Twill) -> Option<twill_proto::bgp::BfdStatus> {
    twill
        .peers()
        .into_iter()
        .find(|p| p.address == "192.0.2.2")
        .and_then(|p| p.bfd)
}

fn bfd_up(twill: &Twill) -> bool {
    bfd_of(twill).is_some_and(|b| b.state == "Up")
}

fn metrics(ns: &Netns) -> String {
    ns.exec("curl", &["-s", "http://127.0.0.1:9179/metrics"])
        .unwrap_or_default()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn bird_bfd_comes_up_and_a_hung_peer_takes_bgp_down_within_the_detection_time() {
    let (t, b) = linked("bfk", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(&b, &bird_with_bfd());
    let twill = Twill::start(&t, &twill_yaml(FAST));
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(40));
    wait_for(
        "BGP and BFD up, BIRD's route in twill's kernel",
        SESSION_TIMEOUT,
        || twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2") && bfd_up(&twill),
        ctx,
    );
    // Both sides' view of the negotiated timers: 100 ms each way, 300 ms detection.
    wait_for(
        "intervals negotiated to 100 ms × 3",
        SESSION_TIMEOUT,
        || bfd_of(&twill).is_some_and(|b| b.tx_interval_ms == 100 && b.detect_time_ms == 300),
        || format!("{:?}", bfd_of(&twill)),
    );
    let birds_view = bird.birdc(&["show", "bfd", "sessions"]);
    assert!(
        birds_view.lines().any(|l| l.contains("192.0.2.1")
            && l.contains("Up")
            && l.contains("0.100")
            && l.contains("0.300")),
        "{birds_view}"
    );

    // The peer hangs (SIGSTOP): no AdminDown, no NOTIFICATION, not even the FIN a killed
    // process's sockets would send; only BFD can tell before the 90 s hold time.
    let bird_pid = nix::unistd::Pid::from_raw(bird.guard.pid() as i32);
    let killed = Instant::now();
    nix::sys::signal::kill(bird_pid, Signal::SIGSTOP).unwrap();
    let mut bgp_down = None;
    let mut route_gone = None;
    // Until both are seen: the session can drop between one check and the next.
    while killed.elapsed() < Duration::from_secs(10) && (bgp_down.is_none() || route_gone.is_none())
    {
        if bgp_down.is_none() && !twill.established("192.0.2.2") {
            bgp_down = Some(killed.elapsed());
        }
        if route_gone.is_none() && !twill_routes(&t).contains("10.244.2.0/26") {
            route_gone = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let bgp_down = bgp_down.expect("BGP session left Established");
    let route_gone = route_gone.expect("BIRD's route left twill's kernel");
    eprintln!("BFD: BGP down after {bgp_down:?}, kernel route gone after {route_gone:?}");
    // 3 × 100 ms, plus scheduling and polling slack on a loaded machine.
    assert!(
        route_gone < Duration::from_millis(900),
        "{route_gone:?}\n{}",
        ctx()
    );
    let b_status = bfd_of(&twill).unwrap();
    assert_eq!(b_status.state, "Down");
    assert_eq!(b_status.diagnostic, "control detection time expired");
    assert!(b_status.holding_bgp, "{b_status:?}");

    nix::sys::signal::kill(bird_pid, Signal::SIGKILL).unwrap();
    // BIRD back with BGP but without BFD: BGP must stay down (held) while BFD is not Up.
    drop(bird);
    let no_bfd = bird_conf(
        "192.0.2.2",
        "192.0.2.2",
        65002,
        "192.0.2.1",
        65001,
        &["10.244.2.0/26"],
        "",
    );
    let bird2 = Bird::start(&b, &no_bfd);
    holds_for(
        "BGP held down while BFD is down",
        Duration::from_secs(5),
        || !twill.established("192.0.2.2") && !bird2.established("twill"),
        || format!("{}\ntwill:\n{}", bird2.context(), twill.guard.log_tail(40)),
    );
    // BFD back: BGP re-establishes and the route returns.
    bird2.reconfigure(&bird_with_bfd());
    wait_for(
        "BFD up again and BGP re-established",
        SESSION_TIMEOUT,
        || bfd_up(&twill) && twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2"),
        || format!("{}\ntwill:\n{}", bird2.context(), twill.guard.log_tail(40)),
    );
    assert!(!bfd_of(&twill).unwrap().holding_bgp);
}

/// Sends `count` UDP datagrams (hex payload) from `src` to 192.0.2.1:3784 with `ttl`.
fn inject(ns: &Netns, payload: &[u8], ttl: u8, count: u32) {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IP,socket.IP_TTL,{ttl})\ns.bind(('192.0.2.2',0))\n\
         p=bytes.fromhex('{hex}')\nfor _ in range({count}): s.sendto(p,('192.0.2.1',3784))\n"
    );
    let out = ns.exec("python3", &["-c", &script]);
    assert!(out.is_ok(), "{out:?}");
}

fn control(state: u8, my: u32, your: u32) -> Vec<u8> {
    let mut v = vec![0x20, state << 6, 3, 24];
    for w in [my, your, 100_000, 100_000, 0] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    v
}

#[test]
fn malformed_low_ttl_and_unknown_discriminator_packets_are_dropped_and_counted() {
    let (t, b) = linked("bfa", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(&b, &bird_with_bfd());
    let twill = Twill::start_with(
        &t,
        &twill_yaml(FAST),
        &["--metrics-listen", "127.0.0.1:9179"],
    );
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(40));
    wait_for(
        "BGP and BFD up",
        SESSION_TIMEOUT,
        || twill.established("192.0.2.2") && bfd_up(&twill),
        ctx,
    );
    let st = bfd_of(&twill).unwrap();
    let before = metrics(&t);
    let downs_before = metric(&before, "twill_bgp_bfd_transitions_total{to=\"Down\"}");

    // Each would take the session down if it were accepted: a Down from the peer's address
    // and discriminators, but with TTL 64 (one hop away at best: RFC 5881 §5)...
    let down = control(1, st.remote_discriminator, st.local_discriminator);
    inject(&b, &down, 64, 50);
    // ...a Down for a discriminator we never gave out...
    inject(
        &b,
        &control(1, 77, st.local_discriminator ^ 0x5a5a_5a5a),
        255,
        50,
    );
    // ...and a storm of garbage: short, wrong version, zero multiplier, multipoint.
    let mut bad_version = down.clone();
    bad_version[0] = 0x40;
    let mut zero_mult = down.clone();
    zero_mult[2] = 0;
    let mut multipoint = down.clone();
    multipoint[1] |= 1;
    inject(&b, &[0x20, 0x40, 3], 255, 2000);
    for p in [&bad_version, &zero_mult, &multipoint] {
        inject(&b, p, 255, 200);
    }
    holds_for(
        "BFD Up and BGP Established through the attack",
        Duration::from_secs(2),
        || bfd_up(&twill) && twill.established("192.0.2.2"),
        ctx,
    );
    let after = metrics(&t);
    let dropped = |r: &str| {
        metric(
            &after,
            &format!("twill_bgp_bfd_dropped_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(dropped("ttl"), 50, "{after}");
    assert_eq!(dropped("unknown_discriminator"), 50, "{after}");
    // Under the storm the kernel drops what overflows the socket buffer (as it would for
    // any flood); what reaches the driver is counted, and the session does not notice.
    let short = dropped("short");
    assert!(short > 100 && short <= 2000, "{after}");
    assert_eq!(dropped("version"), 200, "{after}");
    assert_eq!(dropped("zero_detect_mult"), 200, "{after}");
    assert_eq!(dropped("multipoint"), 200, "{after}");
    assert_eq!(
        metric(&after, "twill_bgp_bfd_transitions_total{to=\"Down\"}"),
        downs_before,
        "no flap: {after}"
    );
    assert_eq!(metric(&after, "twill_bgp_bfd_sessions_up"), 1, "{after}");
}

#[test]
fn frr_bfdd_comes_up_agrees_on_the_intervals_and_its_silence_holds_bgp_down() {
    let (t, f) = linked("bff", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let frr = Frr::start_with_bfd(
        &f,
        "hostname frr\n\
         router bgp 65002\n \
          bgp router-id 192.0.2.2\n \
          no bgp ebgp-requires-policy\n \
          neighbor 192.0.2.1 remote-as 65001\n \
          neighbor 192.0.2.1 timers connect 1\n \
          neighbor 192.0.2.1 bfd\n \
          neighbor 192.0.2.1 bfd profile fast\n",
        Some(
            "bfd\n profile fast\n  receive-interval 100\n  transmit-interval 100\n  \
             detect-multiplier 3\n !\n!\n",
        ),
    );
    let twill = Twill::start(&t, &twill_yaml(FAST));
    let ctx = || {
        format!(
            "{}\nbfdd:\n{}\npeers:\n{}\ntwill:\n{}",
            frr.context(),
            frr.bfdd
                .as_ref()
                .map(|g| g.log_tail(20))
                .unwrap_or_default(),
            frr.vtysh("show bfd peers"),
            twill.guard.log_tail(40)
        )
    };
    wait_for(
        "BGP and BFD up with FRR",
        SESSION_TIMEOUT,
        || frr.established("192.0.2.1") && bfd_up(&twill),
        ctx,
    );
    wait_for(
        "both sides at 100 ms × 3",
        SESSION_TIMEOUT,
        || {
            let b = bfd_of(&twill).unwrap_or_default();
            let frr_view = frr.vtysh("show bfd peer 192.0.2.1");
            b.tx_interval_ms == 100
                && b.detect_time_ms == 300
                && frr_view.contains("Status: up")
                && frr_view.contains("Transmission interval: 100ms")
        },
        ctx,
    );

    // FRR's bfdd hangs while its bgpd stays alive and keeps the TCP session: only BFD can
    // tell. BGP goes down within about the detection time and stays down, refusing FRR's
    // reconnects, until BFD is Up again.
    let bfdd = nix::unistd::Pid::from_raw(frr.bfdd.as_ref().unwrap().pid() as i32);
    let t0 = Instant::now();
    nix::sys::signal::kill(bfdd, Signal::SIGSTOP).unwrap();
    while twill.established("192.0.2.2") {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", ctx());
        std::thread::sleep(Duration::from_millis(5));
    }
    let down = t0.elapsed();
    eprintln!("FRR bfdd frozen: twill's BGP down after {down:?}");
    assert!(down < Duration::from_millis(900), "{down:?}\n{}", ctx());
    holds_for(
        "BGP held down while FRR's BFD is silent",
        Duration::from_secs(4),
        || !twill.established("192.0.2.2") && bfd_of(&twill).is_some_and(|b| b.holding_bgp),
        ctx,
    );
    nix::sys::signal::kill(bfdd, Signal::SIGCONT).unwrap();
    wait_for(
        "BFD Up again and BGP back with FRR",
        SESSION_TIMEOUT,
        || bfd_up(&twill) && twill.established("192.0.2.2") && frr.established("192.0.2.1"),
        ctx,
    );
}

#[test]
fn bird_multihop_bfd_needs_a_minimum_ttl_its_packets_meet_then_comes_up_on_port_4784() {
    let (t, b) = linked("bfm", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    // BIRD runs multi-hop BFD for a multi-hop BGP session (RFC 5883, UDP 4784); it sends
    // those packets with the system's default TTL (64), not 255.
    let bird = Bird::start(
        &b,
        &(bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "multihop 2; bfd on;",
        ) + "protocol bfd {\n  multihop { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };\n}\n"),
    );
    let multihop = |min_ttl: u8| {
        twill_yaml(&format!(
            "{{ receive_interval_ms: 100, transmit_interval_ms: 100, multihop: true, \
             minimum_ttl: {min_ttl} }}"
        ))
    };
    let twill = Twill::start_with(&t, &multihop(250), &["--metrics-listen", "127.0.0.1:9179"]);
    let ctx = || {
        format!(
            "{}\nbfd:\n{}\ntwill:\n{}\n{}",
            bird.context(),
            bird.birdc(&["show", "bfd", "sessions"]),
            twill.guard.log_tail(40),
            metrics(&t)
        )
    };
    // TTL 64 < 250: every packet is dropped and counted; the session never comes up.
    wait_for(
        "BIRD's multi-hop packets dropped for their TTL",
        SESSION_TIMEOUT,
        || metric(&metrics(&t), "twill_bgp_bfd_dropped_total{reason=\"ttl\"}") >= 3,
        ctx,
    );
    assert_ne!(bfd_of(&twill).unwrap().state, "Up", "{}", ctx());
    // A minimum the packets meet (64 sent, 64 received on a shared link), applied live.
    twill.reload(&multihop(60));
    wait_for(
        "multi-hop BFD Up at 100 ms × 3, routes in",
        SESSION_TIMEOUT,
        || {
            bfd_of(&twill).is_some_and(|b| b.state == "Up" && b.detect_time_ms == 300)
                && twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2")
        },
        ctx,
    );
    let sockets = t.exec("ss", &["-uan"]).unwrap_or_default();
    assert!(sockets.contains(":4784"), "{sockets}");
    assert!(
        !sockets.contains(":3784"),
        "single-hop port unused: {sockets}"
    );
}

#[test]
fn bird_bfd_over_ipv6_checks_the_hop_limit_and_comes_up() {
    let (t, b) = linked("bf6", &["2001:db8:5::1/64"], &["2001:db8:5::2/64"]);
    let bird = Bird::start(
        &b,
        &(bird_conf(
            "192.0.2.2",
            "2001:db8:5::2",
            65002,
            "2001:db8:5::1",
            65001,
            &["fd00:244:2::/64"],
            "bfd on;",
        ) + BFD_BIRD),
    );
    let twill = Twill::start(
        &t,
        &format!(
            "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: \"::\", port: 179 }}\n\
             kernel: {{ install: true }}\npeers:\n\
             - {{ address: \"2001:db8:5::2\", asn: 65002, hold_time: 90, connect_retry: 1, \
             families: [ipv6-unicast], bfd: {FAST} }}\n"
        ),
    );
    let ctx = || {
        format!(
            "{}\nbfd:\n{}\ntwill:\n{}",
            bird.context(),
            bird.birdc(&["show", "bfd", "sessions"]),
            twill.guard.log_tail(40)
        )
    };
    let bfd6 = || {
        twill
            .peers()
            .into_iter()
            .find(|p| p.address == "2001:db8:5::2")
            .and_then(|p| p.bfd)
    };
    wait_for(
        "IPv6 BFD Up at 100 ms × 3 and BIRD's route in",
        SESSION_TIMEOUT,
        || {
            bfd6().is_some_and(|b| b.state == "Up" && b.detect_time_ms == 300)
                && twill_routes(&t).contains("fd00:244:2::/64")
        },
        ctx,
    );
    let birds_view = bird.birdc(&["show", "bfd", "sessions"]);
    assert!(
        birds_view
            .lines()
            .any(|l| l.contains("2001:db8:5::1") && l.contains("Up")),
        "{birds_view}"
    );
}
