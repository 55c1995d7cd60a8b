//! BGP fails closed on the lab (issue 11, item 2): a pod poking port 179 every 0.5 s —
//! on the other node (its traffic leaves masqueraded as its own node's address, so it
//! looks like the mesh peer connecting) and on its own node — never flaps the mesh
//! session: the other node's speaker keeps the Established session (RFC 4271 §6.8), and
//! its own node's host-facing policy keeps the pod off the BGP port altogether.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::net::IpAddr;
use std::time::{Duration, Instant};

use twill_proto::bgp as pb;
use twill_tests::probe::{connects, netns_path};
use twill_tests::{LabGuard, unique_name};
use twillctl::lab::{LabSpec, PodSpec, TorKind};

async fn mesh_session(socket: &std::path::Path, peer: &str) -> Option<pb::Peer> {
    let mut c = twillctl::bgp::connect(socket).await.ok()?;
    c.list_peers(pb::ListPeersRequest {})
        .await
        .ok()?
        .into_inner()
        .peers
        .into_iter()
        .find(|p| p.address == peer)
}

async fn established(socket: &std::path::Path, peer: &str) -> pb::Peer {
    let start = Instant::now();
    loop {
        if let Some(p) = mesh_session(socket, peer).await
            && p.state == "Established"
        {
            return p;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the mesh session with {peer} never came up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_poking_port_179_never_flaps_the_mesh() {
    let mut spec = LabSpec::new(&unique_name("bgpfc"), 2).unwrap();
    spec.tor = TorKind::None;
    let g = LabGuard::up_with(spec).await;
    let st = g.state();
    let (n1, n2) = (&st.nodes[0], &st.nodes[1]);
    let pod = g
        .lab
        .add_pod(&PodSpec {
            name: "poker".into(),
            node: 1,
            namespace: "default".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let netns = netns_path(&pod.netns);
    let before = [
        established(&n1.socket, &n2.address).await,
        established(&n2.socket, &n1.address).await,
    ];

    let own: IpAddr = n1.address.parse().unwrap();
    let other: IpAddr = n2.address.parse().unwrap();
    // The pod reaches the other node's port 179 (as its node's address)...
    let mut reached_other = 0;
    let mut reached_own = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        if connects(&netns, other, 179, Duration::from_millis(300)) {
            reached_other += 1;
        }
        if connects(&netns, own, 179, Duration::from_millis(300)) {
            reached_own += 1;
        }
        for (socket, peer) in [(&n1.socket, &n2.address), (&n2.socket, &n1.address)] {
            let p = mesh_session(socket, peer).await.expect("the mesh session");
            assert_eq!(
                p.state, "Established",
                "the poke flapped the session: {p:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        reached_other > 0,
        "the pod never reached the other node's port 179: the test proves nothing"
    );
    // ...but never its own node's: host-facing policy drops it.
    assert_eq!(reached_own, 0, "the pod reached its own node's BGP port");

    let after = [
        mesh_session(&n1.socket, &n2.address).await.unwrap(),
        mesh_session(&n2.socket, &n1.address).await.unwrap(),
    ];
    for (b, a) in before.iter().zip(after.iter()) {
        assert_eq!(
            (b.since_unix, &b.state),
            (a.since_unix, &a.state),
            "the mesh session was restarted: {b:?} then {a:?}"
        );
    }
}
