//! BGP configuration from the datastore, live, on the lab: the `BGPConfiguration`'s
//! communities reach the ToR on the blocks they cover, and removing the ToR's `BGPPeer`
//! ends those sessions while the node-to-node session stays up untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::time::Duration;

use twill_api::resources::{BGPConfiguration, BGPPeer};
use twill_proto::bgp as pb;
use twill_tests::{LabGuard, eventually};
use twillctl::lab::state::lab_dir;
use twillctl::lab::{TorKind, sys};

async fn peers(socket: &std::path::Path) -> Vec<pb::Peer> {
    let mut c = twillctl::bgp::connect(socket).await.unwrap();
    c.list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn communities_and_peers_follow_the_datastore_live() {
    let g = LabGuard::up("bgpcfg", 2, TorKind::Bird).await;
    let st = g.state();
    let ds = g.lab.datastore().await.unwrap();
    let birdc = |args: &[&str]| {
        let sock = lab_dir(&st.name).join("tor").join("bird.ctl");
        let mut all = vec!["-s", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        sys::run("birdc", &all).map_err(|e| format!("birdc failed: {e}"))
    };

    // Communities: every block of the pool carries 65000:100 and a large community.
    let mut cfg: BGPConfiguration = ds.get(None, "default").await.unwrap();
    cfg.spec.communities = vec![twill_api::resources::bgp::Community {
        name: "pods".into(),
        value: "65000:100".into(),
    }];
    cfg.spec.prefix_advertisements = vec![twill_api::resources::bgp::PrefixAdvertisement {
        cidr: "10.244.0.0/16".into(),
        communities: vec!["pods".into(), "64512:7:9".into()],
    }];
    ds.update(&cfg).await.unwrap();
    eventually(
        "the ToR sees the communities",
        Duration::from_secs(20),
        || {
            let routes = birdc(&["show", "route", "all", "protocol", "node1"])?;
            if routes.contains("(65000,100)") && routes.contains("(64512, 7, 9)") {
                Ok(())
            } else {
                Err(routes)
            }
        },
    );

    // Remove the ToR as a peer: both nodes end that session, their mesh session stays
    // Established and is not restarted.
    let node1 = &st.nodes[0];
    let mesh_before = peers(&node1.socket)
        .await
        .into_iter()
        .find(|p| p.address == st.nodes[1].address)
        .expect("the mesh session");
    ds.delete::<BGPPeer>(None, "tor", None).await.unwrap();
    for n in &st.nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let p = peers(&n.socket).await;
            if p.iter().all(|p| p.address != st.tor_address) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: still peers with the ToR: {p:?}",
                n.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mesh_after = peers(&node1.socket)
        .await
        .into_iter()
        .find(|p| p.address == st.nodes[1].address)
        .expect("the mesh session");
    assert_eq!(mesh_after.state, "Established");
    assert_eq!(
        mesh_after.since_unix, mesh_before.since_unix,
        "the mesh session was not restarted: {mesh_before:?} then {mesh_after:?}"
    );
}
