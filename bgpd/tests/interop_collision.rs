//! RFC 4271 §6.8 against a real BIRD 2 peer with graceful restart: bare TCP connections
//! to port 179 from the peer's address (what a pod masqueraded as the node's address can
//! open) never take down the Established session, however often they come.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::peers::{Bird, bird_conf};
use support::*;

const TWILL_YAML: &str = "asn: 65001\nrouter_id: 192.0.2.1\n\
    listen: { address: \"::\", port: 179 }\noriginate: [10.244.1.0/26]\n\
    kernel: { install: true }\npeers:\n\
    - { address: 192.0.2.2, asn: 65002, hold_time: 9, connect_retry: 1, \
    families: [ipv4-unicast], graceful_restart: { enabled: true, restart_time: 120 } }\n";

/// Opens and closes one TCP connection to `target`, sending nothing (a poke).
fn poke(target: SocketAddr) {
    if let Ok(s) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    }
}

#[test]
fn bare_connections_from_the_peer_address_never_reset_an_established_session() {
    let (t, b) = linked("co", &["192.0.2.1/24"], &["192.0.2.2/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "graceful restart on;",
        ),
    );
    let twill = Twill::start(&t, TWILL_YAML);
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(40));
    wait_for(
        "session up, routes both ways",
        SESSION_TIMEOUT,
        || {
            twill.established("192.0.2.2")
                && twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2")
                && route_of(&b, "10.244.1.0/26").contains("via 192.0.2.1")
        },
        ctx,
    );
    let since = |tw: &Twill| {
        tw.peers()
            .iter()
            .find(|p| p.address == "192.0.2.2")
            .map(|p| (p.state.clone(), p.since_unix))
    };
    let before = since(&twill);

    // A poker in BIRD's namespace: a bare connection every 0.5 s for 12 s (longer than
    // the 9 s hold time, so a reset session would also have had time to show).
    let target: SocketAddr = "192.0.2.1:179".parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_poker = stop.clone();
    let pokes = std::thread::scope(|scope| {
        let poker = scope.spawn(|| {
            b.run(move || {
                let mut n = 0u32;
                for _ in 0..60 {
                    poke(target);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(500));
                    if stop_poker.load(Ordering::Relaxed) {
                        break;
                    }
                }
                n
            })
            .unwrap()
        });
        holds_for(
            "the session stays Established under pokes",
            Duration::from_secs(12),
            || twill.established("192.0.2.2") && bird.established("twill"),
            ctx,
        );
        stop.store(true, Ordering::Relaxed);
        poker.join().unwrap()
    });
    assert!(pokes >= 10, "the poker ran only {pokes} times");
    assert_eq!(before, since(&twill), "the session was reset\n{}", ctx());
    assert!(
        !twill.log().contains("session down"),
        "twill logged a session reset\n{}",
        ctx()
    );
    assert!(
        twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2"),
        "{}",
        ctx()
    );
}
