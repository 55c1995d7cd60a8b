use std::net::Ipv4Addr;

use super::*;
use crate::config::Family;
use crate::packet::Capability;

const C1: ConnId = ConnId(1);
const C2: ConnId = ConnId(2);

fn cfg(passive: bool) -> FsmConfig {
    FsmConfig {
        local: LocalSide {
            local_as: 65001,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            peer_as: 65002,
            hold_time: 90,
            families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            graceful_restart: Some(120),
            restarting: false,
            forwarding_preserved: true,
            extended_next_hop: false,
        },
        passive,
        connect_retry: Duration::from_secs(2),
        max_retry: Duration::from_secs(60),
    }
}

fn peer_open(hold: u16, id: [u8; 4]) -> Open {
    Open {
        version: 4,
        my_as: 65002,
        hold_time: hold,
        router_id: Ipv4Addr::from(id),
        capabilities: vec![
            Capability::Multiprotocol {
                afi: crate::packet::Afi::Ipv4,
                safi: crate::packet::Safi::Unicast,
            },
            Capability::FourOctetAs(65002),
        ],
    }
}

fn started(passive: bool) -> Fsm {
    let mut f = Fsm::new(cfg(passive));
    f.process(Input::Start);
    f
}

fn established() -> Fsm {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    f.process(Input::Open(C1, peer_open(30, [192, 0, 2, 9])));
    f.process(Input::Keepalive(C1));
    assert_eq!(f.state(), State::Established);
    f
}

fn sends_notification(out: &[Output], code: u8, subcode: u8) -> bool {
    out.iter().any(|o| {
        matches!(o, Output::Send(_, Message::Notification(n)) if n.code == code && n.subcode == subcode)
    })
}

#[test]
fn start_connects_and_moves_to_connect() {
    let mut f = Fsm::new(cfg(false));
    let out = f.process(Input::Start);
    assert_eq!(f.state(), State::Connect);
    assert!(out.contains(&Output::Connect));
    assert!(out.contains(&Output::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(2)
    )));
}

#[test]
fn passive_start_waits_in_active_without_connecting() {
    let mut f = Fsm::new(cfg(true));
    let out = f.process(Input::Start);
    assert_eq!(f.state(), State::Active);
    assert!(!out.contains(&Output::Connect));
}

#[test]
fn connect_sends_open_and_moves_to_open_sent() {
    let mut f = started(false);
    let out = f.process(Input::TcpConnected(C1));
    assert_eq!(f.state(), State::OpenSent);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Send(C1, Message::Open(o)) if o.my_as == 65001))
    );
    assert!(out.contains(&Output::StartTimer(Timer::Hold, OPEN_HOLD)));
}

#[test]
fn failed_connect_waits_in_active_then_retries() {
    let mut f = started(false);
    f.process(Input::ConnectFailed);
    assert_eq!(f.state(), State::Active);
    let out = f.process(Input::ConnectRetryTimerExpires);
    assert_eq!(f.state(), State::Connect);
    assert!(out.contains(&Output::Connect));
}

#[test]
fn open_negotiates_lower_hold_time_and_sends_keepalive() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let out = f.process(Input::Open(C1, peer_open(30, [192, 0, 2, 9])));
    assert_eq!(f.state(), State::OpenConfirm);
    assert!(out.contains(&Output::Send(C1, Message::Keepalive)));
    assert!(out.contains(&Output::StartTimer(Timer::Hold, Duration::from_secs(30))));
    assert!(out.contains(&Output::StartTimer(
        Timer::Keepalive,
        Duration::from_secs(10)
    )));
    assert_eq!(f.negotiated().unwrap().hold_time, 30);
}

#[test]
fn zero_hold_time_runs_no_timers() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let out = f.process(Input::Open(C1, peer_open(0, [192, 0, 2, 9])));
    assert!(out.contains(&Output::StopTimer(Timer::Hold)));
    assert!(out.contains(&Output::StopTimer(Timer::Keepalive)));
}

#[test]
fn keepalive_in_open_confirm_establishes_the_session() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    f.process(Input::Open(C1, peer_open(90, [192, 0, 2, 9])));
    let out = f.process(Input::Keepalive(C1));
    assert_eq!(f.state(), State::Established);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Established(C1, n) if n.peer_as == 65002))
    );
}

#[test]
fn wrong_peer_as_gets_open_error_bad_peer_as() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let mut open = peer_open(90, [192, 0, 2, 9]);
    open.capabilities = vec![Capability::FourOctetAs(65099)];
    let out = f.process(Input::Open(C1, open));
    assert!(sends_notification(&out, code::OPEN, open_sub::BAD_PEER_AS));
    assert!(out.contains(&Output::Close(C1)));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn four_octet_peer_as_is_read_from_the_capability_not_as_trans() {
    let mut c = cfg(false);
    c.local.peer_as = 4_200_000_002;
    let mut f = Fsm::new(c);
    f.process(Input::Start);
    f.process(Input::TcpConnected(C1));
    let mut open = peer_open(90, [192, 0, 2, 9]);
    open.my_as = crate::packet::AS_TRANS;
    open.capabilities = vec![Capability::FourOctetAs(4_200_000_002)];
    f.process(Input::Open(C1, open));
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn hold_time_of_one_second_is_unacceptable() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let out = f.process(Input::Open(C1, peer_open(1, [192, 0, 2, 9])));
    assert!(sends_notification(
        &out,
        code::OPEN,
        open_sub::UNACCEPTABLE_HOLD_TIME
    ));
}

#[test]
fn unsupported_version_is_refused() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let mut open = peer_open(90, [192, 0, 2, 9]);
    open.version = 3;
    let out = f.process(Input::Open(C1, open));
    assert!(sends_notification(
        &out,
        code::OPEN,
        open_sub::UNSUPPORTED_VERSION
    ));
}

#[test]
fn zero_router_id_is_a_bad_bgp_identifier() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let out = f.process(Input::Open(C1, peer_open(90, [0, 0, 0, 0])));
    assert!(sends_notification(&out, code::OPEN, open_sub::BAD_BGP_ID));
}

#[test]
fn hold_timer_expiry_sends_notification_and_goes_down() {
    let mut f = established();
    let out = f.process(Input::HoldTimerExpires);
    assert!(sends_notification(&out, code::HOLD_TIMER_EXPIRED, 0));
    assert!(out.contains(&Output::Down {
        reason: DownReason::HoldTimerExpired,
        was_established: true
    }));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let mut f = established();
    let out = f.process(Input::KeepaliveTimerExpires);
    assert!(out.contains(&Output::Send(C1, Message::Keepalive)));
    assert!(out.contains(&Output::StartTimer(
        Timer::Keepalive,
        Duration::from_secs(10)
    )));
}

#[test]
fn update_restarts_the_hold_timer() {
    let mut f = established();
    let out = f.process(Input::Update(C1));
    assert_eq!(
        out,
        vec![Output::StartTimer(Timer::Hold, Duration::from_secs(30))]
    );
}

#[test]
fn update_before_established_is_an_fsm_error() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let out = f.process(Input::Update(C1));
    assert!(sends_notification(&out, code::FSM, 1));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn notification_received_ends_session_and_schedules_restart_with_backoff() {
    let mut f = established();
    let n = Notification {
        code: code::CEASE,
        subcode: 2,
        data: vec![],
    };
    let out = f.process(Input::Notification(C1, n.clone()));
    assert!(out.contains(&Output::Down {
        reason: DownReason::NotificationReceived(n),
        was_established: true
    }));
    assert!(out.contains(&Output::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(2)
    )));
    // A second failure waits twice as long.
    f.process(Input::ConnectRetryTimerExpires);
    f.process(Input::TcpConnected(C2));
    let out = f.process(Input::TcpFails(C2));
    assert!(out.contains(&Output::StartTimer(
        Timer::ConnectRetry,
        Duration::from_secs(4)
    )));
}

#[test]
fn manual_stop_sends_cease_and_stays_idle() {
    let mut f = established();
    let out = f.process(Input::Stop(Notification {
        code: code::CEASE,
        subcode: cease::ADMIN_SHUTDOWN,
        data: vec![],
    }));
    assert!(sends_notification(&out, code::CEASE, cease::ADMIN_SHUTDOWN));
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::StartTimer(Timer::ConnectRetry, _)))
    );
    assert!(f.process(Input::ConnectRetryTimerExpires).is_empty());
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn incoming_connection_while_connecting_aborts_the_attempt_and_uses_it() {
    let mut f = started(false);
    let out = f.process(Input::TcpAccepted(C2));
    assert!(out.contains(&Output::AbortConnect));
    assert_eq!(f.state(), State::OpenSent);
    assert_eq!(f.connection(), Some(C2));
}

#[test]
fn passive_peer_accepts_incoming_connection() {
    let mut f = started(true);
    f.process(Input::TcpAccepted(C1));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn collision_keeps_incoming_when_peer_has_higher_id() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let out = f.process(Input::TcpAccepted(C2));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Send(C2, Message::Open(_))))
    );
    assert_eq!(f.state(), State::OpenSent);
    // Peer 192.0.2.9 > our 192.0.2.1: our outgoing connection C1 loses.
    let out = f.process(Input::Open(C2, peer_open(90, [192, 0, 2, 9])));
    assert!(out.contains(&Output::Close(C1)));
    assert!(sends_notification(&out, code::CEASE, cease::COLLISION));
    assert_eq!(f.connection(), Some(C2));
    assert_eq!(f.state(), State::OpenConfirm);
}

#[test]
fn collision_keeps_outgoing_when_we_have_higher_id() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    f.process(Input::TcpAccepted(C2));
    let out = f.process(Input::Open(C2, peer_open(90, [192, 0, 2, 0])));
    assert!(out.contains(&Output::Close(C2)));
    assert!(!out.contains(&Output::Close(C1)));
    assert_eq!(f.connection(), Some(C1));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn incoming_connection_while_established_is_rejected_with_collision_cease() {
    let mut f = Fsm::new(FsmConfig {
        local: LocalSide {
            graceful_restart: None,
            ..cfg(false).local
        },
        ..cfg(false)
    });
    f.process(Input::Start);
    f.process(Input::TcpConnected(C1));
    f.process(Input::Open(C1, peer_open(30, [192, 0, 2, 9])));
    f.process(Input::Keepalive(C1));
    let out = f.process(Input::TcpAccepted(C2));
    assert!(out.contains(&Output::Close(C2)));
    assert_eq!(f.state(), State::Established);
}

fn established_with_graceful_restart_peer() -> Fsm {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    f.process(Input::Open(C1, gr_open([192, 0, 2, 9])));
    f.process(Input::Keepalive(C1));
    assert_eq!(f.state(), State::Established);
    f
}

fn gr_open(id: [u8; 4]) -> Open {
    let mut open = peer_open(30, id);
    open.capabilities.push(Capability::GracefulRestart {
        restarting: false,
        restart_time: 120,
        families: vec![],
    });
    open
}

fn goes_down(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Down { .. }))
}

#[test]
fn new_connection_from_graceful_restart_peer_replaces_established_session_on_its_open() {
    let mut f = established_with_graceful_restart_peer();
    let out = f.process(Input::TcpAccepted(C2));
    // The connection alone changes nothing but an OPEN offered on it.
    assert!(!goes_down(&out), "{out:?}");
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Send(C2, Message::Open(_))))
    );
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.connection(), Some(C1));
    let out = f.process(Input::Open(C2, gr_open([192, 0, 2, 9])));
    assert!(out.contains(&Output::Down {
        reason: DownReason::PeerRestarted,
        was_established: true
    }));
    assert!(out.contains(&Output::Close(C1)));
    assert!(!out.contains(&Output::Close(C2)));
    assert_eq!(f.connection(), Some(C2));
    assert_eq!(f.state(), State::OpenConfirm);
    let out = f.process(Input::Keepalive(C2));
    assert!(out.iter().any(|o| matches!(o, Output::Established(C2, _))));
}

#[test]
fn connection_that_closes_before_any_open_leaves_established_session_up() {
    // A raw TCP poke at port 179 from the peer's address, repeated.
    let mut f = established_with_graceful_restart_peer();
    for i in 2..20 {
        let c = ConnId(i);
        let out = f.process(Input::TcpAccepted(c));
        assert!(!goes_down(&out), "{out:?}");
        let out = f.process(Input::TcpFails(c));
        assert!(!goes_down(&out), "{out:?}");
        assert!(out.contains(&Output::Close(c)));
    }
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.connection(), Some(C1));
    assert!(!goes_down(&f.process(Input::Keepalive(C1))));
}

#[test]
fn garbage_or_keepalive_on_a_new_connection_closes_only_that_connection() {
    let mut f = established_with_graceful_restart_peer();
    f.process(Input::TcpAccepted(C2));
    let bad = Notification {
        code: code::HEADER,
        subcode: 1,
        data: Vec::new(),
    };
    let out = f.process(Input::MessageError(C2, bad));
    assert!(out.contains(&Output::Close(C2)));
    assert!(!goes_down(&out), "{out:?}");
    let c3 = ConnId(3);
    f.process(Input::TcpAccepted(c3));
    let out = f.process(Input::Keepalive(c3));
    assert!(out.contains(&Output::Close(c3)));
    assert!(!goes_down(&out), "{out:?}");
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.connection(), Some(C1));
}

#[test]
fn open_from_another_speaker_or_invalid_open_on_a_new_connection_is_refused() {
    let mut f = established_with_graceful_restart_peer();
    f.process(Input::TcpAccepted(C2));
    // A different BGP identifier: not the peer restarting, an RFC 4271 §6.8 collision
    // with an Established session, which the new connection loses.
    let out = f.process(Input::Open(C2, gr_open([192, 0, 2, 200])));
    assert!(sends_notification(&out, code::CEASE, cease::COLLISION));
    assert!(out.contains(&Output::Close(C2)));
    assert!(!goes_down(&out), "{out:?}");
    // The right identifier with the wrong AS: an OPEN error on that connection only.
    let c3 = ConnId(3);
    f.process(Input::TcpAccepted(c3));
    let mut wrong_as = gr_open([192, 0, 2, 9]);
    wrong_as.my_as = 64999;
    wrong_as
        .capabilities
        .retain(|c| !matches!(c, Capability::FourOctetAs(_)));
    let out = f.process(Input::Open(c3, wrong_as));
    assert!(out.contains(&Output::Close(c3)));
    assert!(!goes_down(&out), "{out:?}");
    assert_eq!(f.state(), State::Established);
    assert_eq!(f.connection(), Some(C1));
}

#[test]
fn events_on_stale_connections_are_ignored() {
    let mut f = established();
    assert!(f.process(Input::TcpFails(C2)).is_empty());
    assert_eq!(f.state(), State::Established);
}

#[test]
fn families_are_the_intersection_and_plain_peers_get_ipv4() {
    let mut f = started(false);
    f.process(Input::TcpConnected(C1));
    let mut open = peer_open(90, [192, 0, 2, 9]);
    open.capabilities = vec![];
    f.process(Input::Open(C1, open));
    let n = f.negotiated().unwrap();
    assert_eq!(n.families, vec![Family::Ipv4Unicast]);
    assert!(!n.four_octet_as);
}

#[test]
fn restarting_speaker_sets_the_restart_bit_and_forwarding_flags_in_its_open() {
    let gr = |local: LocalSide| {
        let open = build_open(&local, local.restarting);
        open.capabilities.into_iter().find_map(|c| match c {
            Capability::GracefulRestart {
                restarting,
                restart_time,
                families,
            } => Some((restarting, restart_time, families)),
            _ => None,
        })
    };
    let fresh = gr(cfg(false).local).unwrap();
    assert!(!fresh.0);
    assert_eq!(fresh.1, 120);
    assert!(fresh.2.iter().all(|(_, _, f)| *f), "{fresh:?}");
    let restarted = gr(LocalSide {
        restarting: true,
        forwarding_preserved: false,
        extended_next_hop: false,
        ..cfg(false).local
    })
    .unwrap();
    assert!(restarted.0);
    assert!(restarted.2.iter().all(|(_, _, f)| !*f), "{restarted:?}");
    let mut f = Fsm::new(FsmConfig {
        local: LocalSide {
            restarting: true,
            ..cfg(false).local
        },
        ..cfg(false)
    });
    f.process(Input::Start);
    let out = f.process(Input::TcpConnected(C1));
    assert!(out.iter().any(|o| matches!(o, Output::Send(_, Message::Open(o)) if o.capabilities.iter().any(|c| matches!(c, Capability::GracefulRestart { restarting: true, .. })))));
}

#[test]
fn extended_next_hop_is_offered_when_configured_and_needs_both_sides() {
    use crate::packet::{Afi, Safi};
    let ipv4_over_ipv6 = Capability::ExtendedNextHop(vec![(Afi::Ipv4, Safi::Unicast, Afi::Ipv6)]);
    let mut local = cfg(false).local;
    assert!(
        !build_open(&local, false)
            .capabilities
            .contains(&ipv4_over_ipv6)
    );
    local.extended_next_hop = true;
    assert!(
        build_open(&local, false)
            .capabilities
            .contains(&ipv4_over_ipv6)
    );

    let mut theirs = peer_open(90, [192, 0, 2, 9]);
    assert!(!negotiate(&local, &theirs).unwrap().extended_next_hop);
    // Only the IPv4-over-IPv6 entry counts.
    theirs.capabilities.push(Capability::ExtendedNextHop(vec![(
        Afi::Ipv6,
        Safi::Unicast,
        Afi::Ipv4,
    )]));
    assert!(!negotiate(&local, &theirs).unwrap().extended_next_hop);
    theirs.capabilities.push(ipv4_over_ipv6);
    assert!(negotiate(&local, &theirs).unwrap().extended_next_hop);
    // Not configured here: not used, whatever the peer offers.
    local.extended_next_hop = false;
    assert!(!negotiate(&local, &theirs).unwrap().extended_next_hop);
}
