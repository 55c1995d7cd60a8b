//! Malformed input from a real socket: a raw TCP client (configured as a peer) sends bad
//! headers, OPENs and UPDATEs; twill-bgpd answers with the right NOTIFICATION, applies
//! RFC 7606 treat-as-withdraw where it says so, and its session with BIRD stays up
//! throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use support::peers::{Bird, bird_conf};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use twill_bgpd::packet::{
    AsSegment, Capability, DecodeCxt, Message, Notification, Open, Origin, PathAttributes, Update,
    decode_message, encode_message,
};

const TWILL: &str = "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: 0.0.0.0, port: 179 }\n\
originate: [10.244.1.0/26]\nkernel: { install: true }\npeers:\n\
  - { address: 192.0.2.2, asn: 65002, hold_time: 9, connect_retry: 1 }\n\
  - { address: 192.0.2.3, asn: 65003, passive: true }\n";

fn encode(m: &Message) -> Vec<u8> {
    let mut b = BytesMut::new();
    encode_message(m, &DecodeCxt::default(), &mut b);
    b.to_vec()
}

fn open(asn: u32, version: u8) -> Vec<u8> {
    let mut o = Open::new(
        asn,
        0,
        Ipv4Addr::new(192, 0, 2, 3),
        vec![Capability::FourOctetAs(asn)],
    );
    o.version = version;
    encode(&Message::Open(o))
}

fn announce(prefix: &str) -> Vec<u8> {
    encode(&Message::Update(Update {
        withdrawn: vec![],
        attrs: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: vec![AsSegment::Sequence(vec![65003])],
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 3)),
            ..Default::default()
        },
        nlri: vec![prefix.parse().unwrap()],
    }))
}

async fn connect() -> TcpStream {
    for _ in 0..100 {
        let s = TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from(([192, 0, 2, 3], 0))).unwrap();
        if let Ok(c) = s.connect(SocketAddr::from(([192, 0, 2, 1], 179))).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot connect to twill-bgpd");
}

/// Reads messages until a NOTIFICATION (or EOF/timeout, which fail the test).
async fn notification(s: &mut TcpStream) -> Notification {
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        while let Ok(Some(m)) = decode_message(&mut buf, &DecodeCxt::default()) {
            if let Message::Notification(n) = m {
                return n;
            }
        }
        let n = tokio::time::timeout_at(deadline, s.read_buf(&mut buf))
            .await
            .expect("no NOTIFICATION within 30 s")
            .unwrap();
        assert!(n > 0, "closed without a NOTIFICATION");
    }
}

/// Sends `bytes` on a fresh connection and returns the NOTIFICATION it earns.
async fn answer_to(bytes: Vec<Vec<u8>>) -> Notification {
    let mut s = connect().await;
    for b in bytes {
        s.write_all(&b).await.unwrap();
    }
    notification(&mut s).await
}

#[test]
fn malformed_messages_get_the_right_notification_and_other_sessions_stay_up() {
    // The raw client speaks from 192.0.2.3, beside BIRD on the same link.
    let (t, b) = linked("mal", &["192.0.2.1/24"], &["192.0.2.2/24", "192.0.2.3/24"]);
    let bird = Bird::start(
        &b,
        &bird_conf(
            "192.0.2.2",
            "192.0.2.2",
            65002,
            "192.0.2.1",
            65001,
            &["10.244.2.0/26"],
            "",
        ),
    );
    let twill = Twill::start(&t, TWILL);
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(40));
    wait_for(
        "BIRD session",
        SESSION_TIMEOUT,
        || bird.established("twill") && twill_routes(&t).contains("10.244.2.0/26"),
        ctx,
    );
    let since = bird.birdc(&["show", "protocols", "twill"]);

    let results = b
        .block_on(|| async {
            let mut r = Vec::new();
            // A header whose marker is not all ones: Connection Not Synchronized (1/1).
            let mut bad_marker = open(65003, 4);
            bad_marker[0] = 0;
            r.push(("bad marker", answer_to(vec![bad_marker]).await, (1, 1)));
            // A header length below 19: Bad Message Length (1/2).
            let mut short = open(65003, 4);
            short[16] = 0;
            short[17] = 10;
            r.push(("bad length", answer_to(vec![short]).await, (1, 2)));
            // An unknown message type: Bad Message Type (1/3).
            let mut bad_type = encode(&Message::Keepalive);
            bad_type[18] = 42;
            r.push(("bad type", answer_to(vec![bad_type]).await, (1, 3)));
            // OPEN with version 3: Unsupported Version Number (2/1).
            r.push(("version 3", answer_to(vec![open(65003, 3)]).await, (2, 1)));
            // OPEN from the wrong AS: Bad Peer AS (2/2).
            r.push(("wrong AS", answer_to(vec![open(65099, 4)]).await, (2, 2)));
            // An UPDATE whose attribute length runs past the message: Malformed
            // Attribute List (3/1).
            let mut bad_update = announce("10.244.8.0/26");
            bad_update[21] = 0xff;
            r.push((
                "attribute list overrun",
                answer_to(vec![
                    open(65003, 4),
                    encode(&Message::Keepalive),
                    bad_update,
                ])
                .await,
                (3, 1),
            ));
            r
        })
        .unwrap();
    for (what, n, (code, subcode)) in results {
        assert_eq!(
            (n.code, n.subcode),
            (code, subcode),
            "{what}: got {n:?}\n{}",
            ctx()
        );
    }

    // RFC 7606: an invalid ORIGIN value is treat-as-withdraw: the route goes, the session stays.
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn({
        let path = b.path();
        move || {
            let f = std::fs::File::open(path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut s = connect().await;
                s.write_all(&open(65003, 4)).await.unwrap();
                s.write_all(&encode(&Message::Keepalive)).await.unwrap();
                s.write_all(&announce("10.244.7.0/26")).await.unwrap();
                let _ = rx.recv_timeout(Duration::from_secs(60));
                let mut bad = announce("10.244.7.0/26");
                let at = bad.windows(4).position(|w| w == [0x40, 1, 1, 0]).unwrap();
                bad[at + 3] = 9;
                s.write_all(&bad).await.unwrap();
                let _ = done_rx.recv_timeout(Duration::from_secs(60));
                // Still open: nothing but keepalive-less silence (hold time 0) came back.
                let mut buf = [0u8; 4096];
                let n = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
                !matches!(n, Ok(Ok(0)) | Ok(Err(_)))
            })
        }
    });
    wait_for(
        "raw peer's route installed",
        SESSION_TIMEOUT,
        || twill_routes(&t).contains("10.244.7.0/26 via 192.0.2.3"),
        ctx,
    );
    tx.send("go").unwrap();
    wait_for(
        "treat-as-withdraw removes the route",
        SESSION_TIMEOUT,
        || !twill_routes(&t).contains("10.244.7.0/26"),
        ctx,
    );
    done_tx.send(()).unwrap();
    assert!(
        client.join().unwrap(),
        "the session survived treat-as-withdraw"
    );

    // BIRD never noticed any of it.
    assert!(bird.established("twill"), "{}", ctx());
    assert_eq!(
        since,
        bird.birdc(&["show", "protocols", "twill"]),
        "BIRD's session was reset"
    );
    assert!(twill_routes(&t).contains("10.244.2.0/26 via 192.0.2.2"));
}
