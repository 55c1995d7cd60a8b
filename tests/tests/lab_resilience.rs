//! Forwarding survives felix: a continuous ping between pods on two nodes loses nothing
//! while felix on the destination node restarts (its kernel routes stay, and the other
//! node keeps its routes as a graceful-restart helper), nor while a route felix owns is
//! deleted behind its back (felix puts it back). A deleted pod route, and a deleted route
//! the embedded speaker learned, come back too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use twill_tests::{LabGuard, eventually, routes};
use twillctl::lab::{PodSpec, TorKind, sys};

/// `ping` from a pod, every 50 ms for `secs` seconds, in the background.
fn continuous_ping(from_ns: &str, to: &str, secs: u32) -> Child {
    Command::new("ip")
        .args([
            "netns", "exec", from_ns, "ping", "-n", "-i", "0.05", "-W", "1",
        ])
        .args(["-w", &secs.to_string(), to])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// (transmitted, received) from ping's summary.
fn summary(child: Child) -> (u32, u32, String) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"))
        .to_string();
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1], line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_keep_talking_through_felix_restart_and_route_deletion() {
    let g = LabGuard::up("resil", 2, TorKind::Bird).await;
    let lab = &g.lab;
    let a = lab
        .add_pod(&PodSpec {
            name: "a".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let b = lab
        .add_pod(&PodSpec {
            name: "b".into(),
            node: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let b_ip = b.ips[0].clone();
    eventually("a reaches b", Duration::from_secs(20), || {
        if twillctl::lab::picture::ping(&a.netns, &b_ip) {
            Ok(())
        } else {
            Err("no reply".into())
        }
    });
    let st = g.state();
    let node2 = st.nodes[1].netns.clone();

    // 1. felix on node 2 restarts while a pings b.
    let pinger = continuous_ping(&a.netns, &b_ip, 12);
    std::thread::sleep(Duration::from_secs(1));
    lab.stop_felix(2).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    lab.start_felix(2, "nftables").unwrap();
    lab.wait_bgp(Duration::from_secs(60)).await.unwrap();
    let (sent, got, line) = summary(pinger);
    assert!(sent > 100, "the ping ran: {line}");
    assert_eq!(sent, got, "loss while felix restarted: {line}");

    // 2. The block's blackhole (felix-owned) is deleted while a pings b: nothing is lost,
    //    and felix puts it back.
    let hole = routes(&node2, "81")
        .into_iter()
        .find(|(p, hops)| p.ends_with("/26") && hops.is_empty())
        .expect("node 2 holds its block with a blackhole")
        .0;
    let pinger = continuous_ping(&a.netns, &b_ip, 4);
    std::thread::sleep(Duration::from_secs(1));
    sys::ip_in(&node2, &["route", "del", "blackhole", &hole, "proto", "81"]).unwrap();
    eventually("the blackhole is back", Duration::from_secs(5), || {
        if routes(&node2, "81").iter().any(|(p, _)| p == &hole) {
            Ok(())
        } else {
            Err(format!("{hole} missing"))
        }
    });
    let (sent, got, line) = summary(pinger);
    assert!(sent > 40, "the ping ran: {line}");
    assert_eq!(sent, got, "loss while a felix route was deleted: {line}");

    // 3. The pod's own route is deleted: felix puts it back and b is reachable again.
    let host_route = format!("{b_ip}/32");
    sys::ip_in(&node2, &["route", "del", &host_route, "proto", "81"]).unwrap();
    eventually("b's route is back", Duration::from_secs(5), || {
        let r = routes(&node2, "81");
        if r.iter().any(|(p, _)| p == &b_ip || p == &host_route) {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(
        twillctl::lab::picture::ping(&a.netns, &b_ip),
        "b reachable after repair"
    );
}
