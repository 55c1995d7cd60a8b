//! felix as an operator sees it on the lab: `/livez`, `/readyz` and `/metrics` on its
//! health address (inside its node), its agent socket only for root, and its policy table
//! put back by the periodic resync after someone deletes it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use twill_tests::probe::netns_path;
use twill_tests::{LabGuard, eventually};
use twillctl::lab::{PodSpec, TorKind, sys};

/// `GET path` on felix's health address from inside `netns`: (status code, body).
fn get(netns: &str, path: &str) -> (u16, String) {
    let ns = netns_path(netns);
    let path = path.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut s =
            TcpStream::connect_timeout(&"127.0.0.1:9099".parse().unwrap(), Duration::from_secs(2))
                .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: felix\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_socket_mode_and_policy_drift() {
    let g = LabGuard::up("agent", 2, TorKind::Bird).await;
    let lab = &g.lab;
    lab.add_pod(&PodSpec {
        name: "web".into(),
        node: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let st = g.state();
    let node = &st.nodes[0];

    assert_eq!(get(&node.netns, "/livez").0, 200);
    eventually("felix ready", Duration::from_secs(10), || {
        match get(&node.netns, "/readyz") {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (code, metrics) = get(&node.netns, "/metrics");
    assert_eq!(code, 200);
    for family in [
        "twill_felix_reconciles_total",
        "twill_felix_local_endpoints 1",
        "twill_felix_bgp_peers_configured 2",
    ] {
        assert!(
            metrics.contains(family),
            "/metrics lacks {family}:\n{metrics}"
        );
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("twill_bgp") || l.starts_with("bgp_")),
        "the embedded speaker's metrics are served too:\n{metrics}"
    );
    assert_eq!(get(&node.netns, "/nope").0, 404);

    // Only root may ask for pod networking.
    let mode = std::fs::metadata(&node.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Someone deletes felix's policy table: the periodic resync (10 s in the lab) puts it
    // back.
    sys::exec_in(&node.netns, "nft", &["delete", "table", "inet", "twill"]).unwrap();
    eventually("the policy table is back", Duration::from_secs(30), || {
        let t = sys::exec_in(&node.netns, "nft", &["list", "table", "inet", "twill"])
            .map_err(|e| e.to_string())?;
        if t.contains("eps-ingress") {
            Ok(())
        } else {
            Err(t)
        }
    });
}
