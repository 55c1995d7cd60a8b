//! The embeddable speaker API as felix uses it: two in-process speakers peering over
//! loopback TCP (ephemeral port, no kernel install): originate/withdraw, events, status,
//! route listings, and live peer changes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use twill_bgpd::config::PeerConfig;
use twill_bgpd::fsm::State;
use twill_bgpd::speaker::{Event, RouteQuery, RouteTable};
use twill_bgpd::{Speaker, SpeakerConfig};

const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_embedded_speakers_exchange_and_withdraw_routes() {
    let mut a_cfg = SpeakerConfig::new(65001, A);
    a_cfg.listen = Some(SocketAddr::from((A, 0)));
    let mut pb = PeerConfig::new(IpAddr::V4(B), 65002);
    pb.passive = true;
    a_cfg.peers = vec![pb];
    a_cfg.originate = vec!["10.244.1.0/26".parse().unwrap()];
    let a = Speaker::start(a_cfg).await.unwrap();
    let port = a.local_addr().unwrap().port();
    let mut events = a.subscribe();

    let mut b_cfg = SpeakerConfig::new(65002, B);
    let mut pa = PeerConfig::new(IpAddr::V4(A), 65001);
    pa.port = port;
    pa.source_address = Some(IpAddr::V4(B));
    pa.connect_retry = Some(1);
    b_cfg.peers = vec![pa];
    let b = Speaker::start(b_cfg).await.unwrap();

    eventually("B learns A's prefix", || async {
        b.routes(RouteQuery::default())
            .await
            .unwrap()
            .iter()
            .any(|r| r.prefix.to_string() == "10.244.1.0/26" && r.next_hop == IpAddr::V4(A))
    })
    .await;
    let established = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::PeerState {
                peer,
                state: State::Established,
            }) = events.recv().await
            {
                return peer;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(established, IpAddr::V4(B));

    // B originates; A sees a route event and lists it in B's Adj-RIB-In.
    b.originate(vec!["10.244.2.0/26".parse().unwrap()]).unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(e @ Event::Route { .. }) = events.recv().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        ev,
        Event::Route {
            prefix: "10.244.2.0/26".parse().unwrap(),
            next_hops: vec![IpAddr::V4(B)]
        }
    );
    let adj_in = a
        .routes(RouteQuery {
            table: RouteTable::AdjRibIn(IpAddr::V4(B)),
            prefix: None,
        })
        .await
        .unwrap();
    assert_eq!(adj_in.len(), 1);
    assert_eq!(adj_in[0].attrs.as_path.len(), 1);

    let peers = a.peers().await.unwrap();
    assert_eq!(peers[0].state, State::Established);
    assert_eq!(
        (peers[0].received, peers[0].accepted, peers[0].advertised),
        (1, 1, 1)
    );

    // Withdraw on A: B loses the route.
    a.withdraw(vec!["10.244.1.0/26".parse().unwrap()]).unwrap();
    eventually("B loses A's prefix", || async {
        b.routes(RouteQuery::default())
            .await
            .unwrap()
            .iter()
            .all(|r| r.prefix.to_string() != "10.244.1.0/26")
    })
    .await;

    // Removing the peer live on A ends the session; A forgets B's routes.
    a.set_peers(vec![], Default::default()).unwrap();
    eventually("A drops B's routes", || async {
        a.routes(RouteQuery::default()).await.unwrap().is_empty()
    })
    .await;
    eventually("B sees the session end", || async {
        b.peers().await.unwrap()[0].state != State::Established
    })
    .await;
    let last = b.peers().await.unwrap()[0]
        .last_error
        .clone()
        .unwrap_or_default();
    assert!(
        last.contains("6/3"),
        "Cease / peer de-configured expected, got {last:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originated_prefixes_carry_their_communities_and_a_change_is_sent() {
    use twill_bgpd::packet::LargeCommunity;
    use twill_bgpd::speaker::Communities;

    const C: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
    const D: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
    let mut c_cfg = SpeakerConfig::new(65003, C);
    c_cfg.listen = Some(SocketAddr::from((C, 0)));
    let mut pd = PeerConfig::new(IpAddr::V4(D), 65004);
    pd.passive = true;
    c_cfg.peers = vec![pd];
    let c = Speaker::start(c_cfg).await.unwrap();
    let port = c.local_addr().unwrap().port();
    let mut d_cfg = SpeakerConfig::new(65004, D);
    let mut pc = PeerConfig::new(IpAddr::V4(C), 65003);
    pc.port = port;
    pc.source_address = Some(IpAddr::V4(D));
    pc.connect_retry = Some(1);
    d_cfg.peers = vec![pc];
    let d = Speaker::start(d_cfg).await.unwrap();

    let block: ipnet::IpNet = "10.244.7.0/26".parse().unwrap();
    let tagged = |standard: Vec<u32>, large: Vec<LargeCommunity>| Communities { standard, large };
    c.originate_with(
        vec![block],
        tagged(
            vec![(65003 << 16) | 100],
            vec![LargeCommunity {
                global_admin: 65003,
                local_data1: 1,
                local_data2: 2,
            }],
        ),
    )
    .unwrap();
    let seen = |want: u32| {
        let d = &d;
        async move {
            d.routes(RouteQuery::default())
                .await
                .unwrap()
                .iter()
                .any(|r| r.prefix == block && r.attrs.communities == vec![want])
        }
    };
    eventually("D sees the block with community 65003:100", || {
        seen((65003 << 16) | 100)
    })
    .await;
    let route = d.routes(RouteQuery::default()).await.unwrap();
    let r = route.iter().find(|r| r.prefix == block).unwrap();
    assert_eq!(r.attrs.large_communities.len(), 1, "{:?}", r.attrs);
    assert_eq!(r.attrs.large_communities[0].local_data2, 2);

    // The same prefix announced with another community replaces it at the peer.
    c.originate_with(vec![block], tagged(vec![(65003 << 16) | 200], vec![]))
        .unwrap();
    eventually("D sees the new community", || seen((65003 << 16) | 200)).await;
    let route = d.routes(RouteQuery::default()).await.unwrap();
    let r = route.iter().find(|r| r.prefix == block).unwrap();
    assert!(r.attrs.large_communities.is_empty(), "{:?}", r.attrs);
    c.shutdown().await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_peer_gets_no_session_and_no_routes_until_released() {
    let mut a_cfg = SpeakerConfig::new(65001, A);
    a_cfg.listen = Some(SocketAddr::from((A, 0)));
    let mut pb = PeerConfig::new(IpAddr::V4(B), 65002);
    pb.held = Some("BGPFilter tor-out not found".into());
    a_cfg.peers = vec![pb.clone()];
    a_cfg.originate = vec!["10.244.1.0/26".parse().unwrap()];
    let a = Speaker::start(a_cfg).await.unwrap();
    let port = a.local_addr().unwrap().port();

    // B keeps trying to connect to A.
    let mut b_cfg = SpeakerConfig::new(65002, B);
    let mut pa = PeerConfig::new(IpAddr::V4(A), 65001);
    pa.port = port;
    pa.source_address = Some(IpAddr::V4(B));
    pa.connect_retry = Some(1);
    b_cfg.peers = vec![pa];
    b_cfg.originate = vec!["10.244.2.0/26".parse().unwrap()];
    let b = Speaker::start(b_cfg).await.unwrap();

    for _ in 0..30 {
        let peers = a.peers().await.unwrap();
        assert_eq!(peers.len(), 1, "the held peer is listed");
        assert_eq!(peers[0].state, State::Idle, "{peers:?}");
        assert_eq!(
            peers[0].held.as_deref(),
            Some("BGPFilter tor-out not found")
        );
        assert!(
            b.routes(RouteQuery::default())
                .await
                .unwrap()
                .iter()
                .all(|r| r.prefix.to_string() != "10.244.1.0/26"),
            "exported while held"
        );
        assert!(
            a.routes(RouteQuery::default())
                .await
                .unwrap()
                .iter()
                .all(|r| r.prefix.to_string() != "10.244.2.0/26"),
            "imported while held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Released: the session comes up and routes flow both ways.
    pb.held = None;
    a.set_peers(vec![pb], Default::default()).unwrap();
    eventually("routes both ways once released", || async {
        let to_b = b
            .routes(RouteQuery::default())
            .await
            .unwrap()
            .iter()
            .any(|r| r.prefix.to_string() == "10.244.1.0/26");
        let to_a = a
            .routes(RouteQuery::default())
            .await
            .unwrap()
            .iter()
            .any(|r| r.prefix.to_string() == "10.244.2.0/26");
        to_b && to_a
    })
    .await;
    let peers = a.peers().await.unwrap();
    assert_eq!(
        (peers[0].state, peers[0].held.clone()),
        (State::Established, None)
    );
}
