//! Behaviours of the BFD session state machine (RFC 5880 §6.8).

use std::time::{Duration, Instant};

use super::packet::{ControlPacket, Diag, State};
use super::session::{Output, Session, SessionConfig};

fn cfg(ms: u64) -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(ms),
        required_min_rx: Duration::from_millis(ms),
        detect_mult: 3,
        passive: false,
    }
}

fn sent(out: &[Output]) -> Vec<ControlPacket> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(p) => Some(*p),
            Output::StateChanged { .. } => None,
        })
        .collect()
}

fn changes(out: &[Output]) -> Vec<(State, State, Diag)> {
    out.iter()
        .filter_map(|o| match o {
            Output::StateChanged { from, to, diag } => Some((*from, *to, *diag)),
            Output::Send(_) => None,
        })
        .collect()
}

/// Runs two sessions against each other until `until`, delivering every packet at once.
fn run_pair(a: &mut Session, b: &mut Session, start: Instant, until: Instant) -> Vec<Output> {
    let mut a_changes = Vec::new();
    let mut now = start;
    for _ in 0..100_000 {
        let next = [a.next_deadline(), b.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { break };
        if next > until {
            break;
        }
        now = now.max(next);
        let mut to_b = sent(&a.on_timer(now));
        let mut to_a = sent(&b.on_timer(now));
        for _ in 0..10 {
            if to_a.is_empty() && to_b.is_empty() {
                break;
            }
            let mut next_a = Vec::new();
            let mut next_b = Vec::new();
            for p in to_b.drain(..) {
                next_a.extend(sent(&b.on_packet(&p, now).unwrap()));
            }
            for p in to_a.drain(..) {
                let out = a.on_packet(&p, now).unwrap();
                a_changes.extend(
                    out.iter()
                        .filter(|o| matches!(o, Output::StateChanged { .. })),
                );
                next_b.extend(sent(&out));
            }
            to_b = next_b;
            to_a = next_a;
        }
    }
    a_changes
}

#[test]
fn three_way_handshake_reaches_up_on_both_sides() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(100), 2);
    a.start(t0);
    b.start(t0);
    let ch = run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(5));
    assert_eq!(a.state(), State::Up);
    assert_eq!(b.state(), State::Up);
    assert_eq!(a.remote_discr(), 2);
    assert_eq!(b.remote_discr(), 1);
    // Up once, and no flap in the five seconds after (slow start must not outlive the
    // peer's detection time).
    let ch = changes(&ch);
    assert_eq!(
        ch.iter().filter(|(_, t, _)| *t == State::Up).count(),
        1,
        "{ch:?}"
    );
    assert!(!ch.iter().any(|(_, t, _)| *t == State::Down), "{ch:?}");
}

#[test]
fn down_packet_moves_down_to_init_and_init_packet_to_up() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(100), 7);
    let mut p = ControlPacket {
        diag: Diag::None,
        state: State::Down,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 9,
        your_discr: 0,
        desired_min_tx: 1_000_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    let out = s.on_packet(&p, t0).unwrap();
    assert_eq!(changes(&out), vec![(State::Down, State::Init, Diag::None)]);
    // The state change goes out at once, addressed to the peer.
    let tx = sent(&out);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].your_discr, 9);
    assert_eq!(tx[0].state, State::Init);
    p.state = State::Up;
    p.your_discr = 7;
    let out = s.on_packet(&p, t0).unwrap();
    assert_eq!(changes(&out), vec![(State::Init, State::Up, Diag::None)]);
}

#[test]
fn slow_start_sends_at_one_second_until_up_then_polls_the_configured_interval() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    a.start(t0);
    let first = sent(&a.on_timer(t0));
    assert_eq!(first[0].desired_min_tx, 1_000_000, "slow start while Down");
    assert_eq!(first[0].required_min_rx, 100_000);
    let mut b = Session::new(cfg(100), 2);
    b.start(t0);
    run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(3));
    assert_eq!(a.state(), State::Up);
    assert!(!a.polling(), "the peer's Final ended the poll");
    assert_eq!(a.status().tx_interval, Duration::from_millis(100));
    assert_eq!(a.status().detect_time, Duration::from_millis(300));
}

#[test]
fn going_up_starts_a_poll_and_the_final_ends_it() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(100), 1);
    let mut p = ControlPacket {
        diag: Diag::None,
        state: State::Init,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 5,
        your_discr: 1,
        desired_min_tx: 1_000_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    let out = s.on_packet(&p, t0).unwrap();
    assert_eq!(s.state(), State::Up);
    let tx = sent(&out);
    assert!(tx[0].poll, "{tx:?}");
    assert_eq!(tx[0].desired_min_tx, 100_000);
    assert!(s.polling());
    p.state = State::Up;
    p.final_ = true;
    s.on_packet(&p, t0).unwrap();
    assert!(!s.polling());
}

#[test]
fn a_poll_is_answered_at_once_with_a_final() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(100), 1);
    let p = ControlPacket {
        diag: Diag::None,
        state: State::Down,
        poll: true,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 5,
        your_discr: 0,
        desired_min_tx: 1_000_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    let tx = sent(&s.on_packet(&p, t0).unwrap());
    assert!(tx.iter().any(|p| p.final_ && !p.poll), "{tx:?}");
}

#[test]
fn silence_for_the_detection_time_takes_the_session_down() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(100), 2);
    a.start(t0);
    b.start(t0);
    let up_at = t0 + Duration::from_secs(3);
    run_pair(&mut a, &mut b, t0, up_at);
    assert_eq!(a.state(), State::Up);
    let detect = a.status().detect_time;
    assert_eq!(detect, Duration::from_millis(300));
    // b dies: a only runs its timers.
    let mut down_at = None;
    for _ in 0..1000 {
        let Some(now) = a.next_deadline() else { break };
        let out = a.on_timer(now);
        if changes(&out).contains(&(State::Up, State::Down, Diag::ControlDetectionTimeExpired)) {
            down_at = Some(now);
            break;
        }
    }
    let down_at = down_at.expect("session went down");
    assert!(down_at - up_at <= detect, "{:?}", down_at - up_at);
    assert_eq!(a.remote_discr(), 0, "§6.8.1: remote discriminator reset");
}

#[test]
fn neighbor_down_takes_an_up_session_down_with_diag_3() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(100), 2);
    a.start(t0);
    b.start(t0);
    run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(3));
    let mut p = b.admin_down();
    p.state = State::Down;
    p.diag = Diag::ControlDetectionTimeExpired;
    let out = a.on_packet(&p, t0 + Duration::from_secs(3)).unwrap();
    assert_eq!(
        changes(&out),
        vec![(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
}

#[test]
fn packet_for_another_discriminator_is_discarded_without_state_change() {
    let t0 = Instant::now();
    let mut s = Session::new(cfg(100), 1);
    let p = ControlPacket {
        diag: Diag::None,
        state: State::Up,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 5,
        your_discr: 99,
        desired_min_tx: 100_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    assert!(s.on_packet(&p, t0).is_err());
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.remote_discr(), 0);
}

#[test]
fn passive_session_stays_silent_until_the_peer_speaks() {
    let t0 = Instant::now();
    let mut c = cfg(100);
    c.passive = true;
    let mut s = Session::new(c, 1);
    s.start(t0);
    assert_eq!(s.next_deadline(), None);
    assert!(s.on_timer(t0 + Duration::from_secs(5)).is_empty());
}

#[test]
fn intervals_negotiate_to_the_slower_side() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(300), 2);
    a.start(t0);
    b.start(t0);
    run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(5));
    assert_eq!(a.state(), State::Up);
    // a may send every 100 ms but b wants no more than every 300 ms.
    assert_eq!(a.status().tx_interval, Duration::from_millis(300));
    // b sends every 300 ms, so a's detection time is 3 × 300 ms.
    assert_eq!(a.status().detect_time, Duration::from_millis(900));
    assert_eq!(b.status().detect_time, Duration::from_millis(900));
}

#[test]
fn raising_the_transmit_interval_while_up_waits_for_the_final() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(100), 2);
    a.start(t0);
    b.start(t0);
    run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(3));
    let now = t0 + Duration::from_secs(3);
    let out = a.set_config(cfg(500), now);
    let tx = sent(&out);
    assert!(tx[0].poll && tx[0].desired_min_tx == 500_000, "{tx:?}");
    assert_eq!(
        a.status().tx_interval,
        Duration::from_millis(100),
        "not yet"
    );
    let fin = sent(&b.on_packet(&tx[0], now).unwrap());
    a.on_packet(&fin[0], now).unwrap();
    assert_eq!(a.status().tx_interval, Duration::from_millis(500));
    assert_eq!(a.state(), State::Up);
}

#[test]
fn transmit_jitter_stays_within_75_to_100_percent() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(100), 2);
    a.start(t0);
    b.start(t0);
    run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(3));
    assert!(!a.polling());
    let up = ControlPacket {
        diag: Diag::None,
        state: State::Up,
        poll: false,
        final_: false,
        cpi: false,
        demand: false,
        detect_mult: 3,
        my_discr: 2,
        your_discr: 1,
        desired_min_tx: 100_000,
        required_min_rx: 100_000,
        required_min_echo_rx: 0,
    };
    let mut last = None;
    let mut gaps = Vec::new();
    for _ in 0..200 {
        let now = a.next_deadline().unwrap();
        // The peer stays alive: a packet from it arrives with every tick.
        a.on_packet(&up, now).unwrap();
        if !sent(&a.on_timer(now)).is_empty() {
            if let Some(l) = last {
                gaps.push(now - l);
            }
            last = Some(now);
        }
        assert_eq!(a.state(), State::Up);
    }
    assert!(gaps.len() > 100);
    for g in &gaps {
        assert!(
            *g >= Duration::from_millis(75) && *g <= Duration::from_millis(100),
            "{g:?}"
        );
    }
    assert!(gaps.iter().any(|g| *g != gaps[0]), "jittered, not constant");
}

#[test]
fn peer_admin_down_takes_the_session_down_and_says_so_in_the_remote_state() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    let mut b = Session::new(cfg(100), 2);
    a.start(t0);
    b.start(t0);
    run_pair(&mut a, &mut b, t0, t0 + Duration::from_secs(3));
    let bye = b.admin_down();
    let out = a.on_packet(&bye, t0 + Duration::from_secs(3)).unwrap();
    assert_eq!(
        changes(&out),
        vec![(State::Up, State::Down, Diag::NeighborSignaledSessionDown)]
    );
    // The speaker keeps BGP up for a deliberate AdminDown (RFC 5882 §3.2): it needs to see it.
    assert_eq!(a.status().remote_state, State::AdminDown);
    // And stays Down: AdminDown packets do not restart the handshake.
    let out = a.on_packet(&bye, t0 + Duration::from_secs(4)).unwrap();
    assert!(changes(&out).is_empty());
    assert_eq!(a.state(), State::Down);
}

#[test]
fn new_timers_while_down_apply_at_once_without_a_poll() {
    let t0 = Instant::now();
    let mut a = Session::new(cfg(100), 1);
    a.start(t0);
    let out = a.set_config(cfg(50), t0);
    assert!(sent(&out).is_empty(), "{out:?}");
    assert!(!a.polling());
    let p = sent(&a.on_timer(t0));
    assert_eq!(p[0].required_min_rx, 50_000);
    assert_eq!(p[0].desired_min_tx, 1_000_000, "still slow start");
}
