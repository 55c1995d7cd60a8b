//! A BGPPeer whose references dangle is held, never unfiltered (issue 11, item 4): on
//! the lab, the ToR's peer names a BGPFilter that does not exist; no node exports
//! anything to the BIRD ToR (nor imports from it), `node status` and the peer's status
//! say why, and once the filter is created the nodes export exactly what it lets through.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::time::{Duration, Instant};

use twill_api::resources::{BGPFilter, BGPPeer, IPAMBlock};
use twill_proto::bgp as pb;
use twill_tests::{LabGuard, eventually};
use twillctl::lab::state::lab_dir;
use twillctl::lab::{TorKind, sys};

async fn tor_peer(socket: &std::path::Path, tor: &str) -> Option<pb::Peer> {
    let mut c = twillctl::bgp::connect(socket).await.ok()?;
    c.list_peers(pb::ListPeersRequest {})
        .await
        .ok()?
        .into_inner()
        .peers
        .into_iter()
        .find(|p| p.address == tor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_naming_a_missing_filter_exports_nothing_until_it_exists() {
    let g = LabGuard::up("bgphold", 2, TorKind::Bird).await;
    let st = g.state();
    let ds = g.lab.datastore().await.unwrap();
    let birdc = |args: &[&str]| {
        let sock = lab_dir(&st.name).join("tor").join("bird.ctl");
        let mut all = vec!["-s", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        // A failed birdc is an error, never an empty table (which the checks below would
        // read as "nothing exported").
        sys::run("birdc", &all).map_err(|e| format!("birdc failed: {e}"))
    };
    let tor_routes = || birdc(&["show", "route", "where", "net ~ 10.244.0.0/16"]);
    eventually(
        "the ToR learns the pod blocks",
        Duration::from_secs(60),
        || {
            let r = tor_routes()?;
            if r.contains("10.244.") {
                Ok(())
            } else {
                Err(r)
            }
        },
    );

    // The ToR's peer names a filter nobody created.
    let mut peer: BGPPeer = ds.get(None, "tor").await.unwrap();
    peer.spec.filters = vec!["tor-out".into()];
    ds.update(&peer).await.unwrap();
    eventually(
        "the ToR loses every pod route",
        Duration::from_secs(30),
        || {
            let r = tor_routes()?;
            if r.contains("10.244.") {
                Err(r)
            } else {
                Ok(())
            }
        },
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        let r = tor_routes().unwrap();
        assert!(!r.contains("10.244."), "exported while held: {r}");
        std::thread::sleep(Duration::from_millis(250));
    }
    for n in &st.nodes {
        let p = tor_peer(&n.socket, &st.tor_address)
            .await
            .expect("the ToR peer listed");
        assert_ne!(p.state, "Established", "{}: {p:?}", n.name);
        assert!(p.held.contains("tor-out"), "{}: {p:?}", n.name);
        assert_eq!(p.prefixes_advertised, 0, "{}: {p:?}", n.name);
    }
    let shown = twillctl::bgp::render_peers(&[tor_peer(&st.nodes[0].socket, &st.tor_address)
        .await
        .unwrap()]);
    assert!(
        shown.contains("Held (") && shown.contains("tor-out"),
        "{shown}"
    );
    let start = Instant::now();
    loop {
        let p: BGPPeer = ds.get(None, "tor").await.unwrap();
        let cond = p
            .status
            .as_ref()
            .and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == "ReferencesResolved")
            })
            .cloned();
        if let Some(c) = &cond
            && c.status == "False"
            && c.message.contains("tor-out")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no ReferencesResolved=False on the peer: {cond:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The filter appears: it rejects node1's block; everything else goes out.
    let node1_block = ds
        .list::<IPAMBlock>(None)
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|b| b.spec.affinity.as_deref() == Some(&format!("host:{}", st.nodes[0].name)))
        .expect("node1's block")
        .spec
        .cidr;
    let filter: BGPFilter = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.twill.dev/v1", "kind": "BGPFilter",
        "metadata": { "name": "tor-out" },
        "spec": { "exportV4": [
            { "cidr": node1_block, "matchOperator": "Equal", "action": "Reject" }
        ] }
    }))
    .unwrap();
    ds.create(&filter).await.unwrap();
    eventually(
        "the ToR learns the blocks the filter lets through",
        Duration::from_secs(60),
        || {
            let r = tor_routes()?;
            let other_blocks = r
                .lines()
                .any(|l| l.contains("10.244.") && !l.contains(&node1_block));
            if other_blocks && !r.contains(&node1_block) {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let r = tor_routes().unwrap();
        assert!(
            !r.contains(&node1_block),
            "the filter let {node1_block} through: {r}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for n in &st.nodes {
        let p = tor_peer(&n.socket, &st.tor_address).await.unwrap();
        assert!(p.held.is_empty(), "{}: still held: {p:?}", n.name);
    }
}
