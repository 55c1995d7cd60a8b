//! The control API of a standalone twill-bgpd peering with BIRD: ListPeers, ListRoutes
//! (Loc-RIB, Adj-RIB-In/Out, prefix filter), Originate/Withdraw reaching BIRD, the Watch
//! stream, and the Prometheus metrics endpoint.

mod support;

use std::time::Duration;

use support::peers::{Bird, bird_conf};
use support::*;
use twill_proto::bgp as pb;

use support::api_client as client;

#[test]
fn control_api_lists_peers_and_routes_and_originates() {
    let (t, b) = linked("api", &["192.0.2.1/24"], &["192.0.2.2/24"]);
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
    let twill = Twill::start_with(
        &t,
        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: 0.0.0.0, port: 179 }\n\
         originate: [10.244.1.0/26]\n\
         peers: [{ address: 192.0.2.2, asn: 65002, hold_time: 9, connect_retry: 1 }, \
                 { address: 192.0.2.9, asn: 65009, passive: true }]\n",
        &["--metrics-listen", "127.0.0.1:9179"],
    );
    let ctx = || format!("{}\ntwill:\n{}", bird.context(), twill.guard.log_tail(30));
    wait_for(
        "session",
        SESSION_TIMEOUT,
        || bird.established("twill"),
        ctx,
    );
    let api = twill.api.clone();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = client(api).await;
        // Peers: BIRD Established with its counts; the silent passive peer is Active.
        let mut peers = Vec::new();
        for _ in 0..300 {
            peers = c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner().peers;
            if peers.iter().any(|p| p.address == "192.0.2.2" && p.prefixes_accepted == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bird_peer = peers.iter().find(|p| p.address == "192.0.2.2").unwrap();
        assert_eq!(bird_peer.state, "Established", "{peers:?}");
        assert_eq!(bird_peer.r#type, "eBGP");
        assert_eq!(bird_peer.router_id, "192.0.2.2");
        assert_eq!((bird_peer.prefixes_received, bird_peer.prefixes_accepted), (2, 2));
        assert_eq!(bird_peer.prefixes_advertised, 1);
        let idle = peers.iter().find(|p| p.address == "192.0.2.9").unwrap();
        assert_eq!(idle.state, "Active");

        // Loc-RIB with a prefix filter.
        let routes = c
            .list_routes(pb::ListRoutesRequest {
                table: pb::Table::LocRib as i32,
                peer: String::new(),
                prefix: "10.244.2.0/24".to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .routes;
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(routes[0].prefix, "10.244.2.0/26");
        assert_eq!(routes[0].next_hop, "192.0.2.2");
        assert_eq!(routes[0].as_path, "65002");
        assert!(routes[0].best);

        // Adj-RIB-Out towards BIRD: our prefix with our AS prepended.
        let out = c
            .list_routes(pb::ListRoutesRequest {
                table: pb::Table::AdjRibOut as i32,
                peer: "192.0.2.2".to_owned(),
                prefix: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .routes;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].prefix.as_str(), out[0].as_path.as_str()), ("10.244.1.0/26", "65001"));

        // Adj-RIB-In of BIRD: its two statics.
        let adj_in = c
            .list_routes(pb::ListRoutesRequest {
                table: pb::Table::AdjRibIn as i32,
                peer: "192.0.2.2".to_owned(),
                prefix: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .routes;
        assert_eq!(adj_in.len(), 2, "{adj_in:?}");

        // Watch, then originate: the route event arrives and BIRD learns the prefix.
        let mut watch = c.watch(pb::WatchRequest {}).await.unwrap().into_inner();
        c.originate(pb::OriginateRequest {
            prefixes: vec!["10.244.50.0/26".to_owned()],
        })
        .await
        .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(30), watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(
            matches!(&ev.event, Some(pb::watch_event::Event::Route(r)) if r.prefix == "10.244.50.0/26"),
            "{ev:?}"
        );
        let bad = c
            .originate(pb::OriginateRequest {
                prefixes: vec!["not-a-prefix".to_owned()],
            })
            .await
            .unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    });
    wait_for(
        "originated prefix at BIRD",
        SESSION_TIMEOUT,
        || {
            bird.birdc(&["show", "route", "10.244.50.0/26"])
                .contains("10.244.50.0/26")
        },
        ctx,
    );
    let api = twill.api.clone();
    rt.block_on(async {
        let mut c = client(api).await;
        c.withdraw(pb::WithdrawRequest {
            prefixes: vec!["10.244.50.0/26".to_owned()],
        })
        .await
        .unwrap();
    });
    wait_for(
        "withdrawn prefix leaves BIRD",
        SESSION_TIMEOUT,
        || {
            !bird
                .birdc(&["show", "route", "10.244.50.0/26"])
                .contains("10.244.50.0/26")
        },
        ctx,
    );

    // Prometheus metrics, scraped over HTTP inside twill's namespace: sessions by state,
    // prefixes per peer, UPDATEs in and out (gauges refresh every second).
    let scrape = || {
        t.block_on(|| async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let Ok(mut s) = tokio::net::TcpStream::connect("127.0.0.1:9179").await else {
                return String::new();
            };
            let _ = s
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut body = String::new();
            let _ = s.read_to_string(&mut body).await;
            body
        })
        .unwrap_or_default()
    };
    wait_for(
        "metrics show the sessions and prefixes",
        SESSION_TIMEOUT,
        || {
            let m = scrape();
            m.starts_with("HTTP/1.1 200")
                && m.contains("twill_bgp_sessions{state=\"Established\"} 1")
                && m.contains("twill_bgp_sessions{state=\"Active\"} 1")
                && m.contains("twill_bgp_prefixes{peer=\"192.0.2.2\",kind=\"accepted\"} 2")
                && m.contains("twill_bgp_prefixes{peer=\"192.0.2.2\",kind=\"advertised\"} 1")
        },
        scrape,
    );
    let m = scrape();
    let count = |name: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("twill_bgp_updates_total{direction=\"in\"}") >= 1,
        "{m}"
    );
    assert!(
        count("twill_bgp_updates_total{direction=\"out\"}") >= 2,
        "{m}"
    );
}
