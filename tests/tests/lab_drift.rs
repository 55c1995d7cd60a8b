//! Drift of felix's own state in the lab: the `inet twill` table deleted or flushed comes
//! back within a second or two (felix watches nf_tables notifications, not only its
//! periodic resync), and a pod's host veth deleted while the pod lives is reported once
//! (felix's log, the endpoint, `twillctl ipam check`), not logged every second.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::process::Command;
use std::time::{Duration, Instant};

use twill_tests::{LabGuard, eventually};
use twillctl::lab::{PodSpec, TorKind, sys};

/// The table's listing, or empty when it does not exist.
fn table(ns: &str) -> String {
    sys::exec_in(ns, "nft", &["list", "table", "inet", "twill"]).unwrap_or_default()
}

/// Lines of the listing that are rules or set elements' holders (what a flush removes).
fn shape(listing: &str) -> usize {
    listing.lines().filter(|l| !l.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_flushed_policy_table_is_repaired_within_two_seconds() {
    let g = LabGuard::up("nftdrift", 1, TorKind::None).await;
    g.lab
        .add_pod(&PodSpec {
            name: "a".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let ns = g.state().nodes[0].netns.clone();
    let mut want = 0;
    eventually("felix's table", Duration::from_secs(20), || {
        want = shape(&table(&ns));
        if want > 5 { Ok(()) } else { Err(table(&ns)) }
    });
    // Three times, so that a periodic resync (every 10 s in the lab) landing by chance
    // cannot pass for the repair.
    for (i, how) in [
        &["delete", "table", "inet", "twill"],
        &["flush", "table", "inet", "twill"],
        &["flush", "table", "inet", "twill"],
    ]
    .iter()
    .enumerate()
    {
        sys::exec_in(&ns, "nft", &how[..]).unwrap();
        let start = Instant::now();
        let mut now = shape(&table(&ns));
        while now != want && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(50));
            now = shape(&table(&ns));
        }
        let took = start.elapsed();
        assert_eq!(now, want, "round {i} ({how:?}): the table came back whole");
        assert!(
            took < Duration::from_secs(2),
            "round {i} ({how:?}): repaired after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_veth_is_reported_once_and_by_ipam_check() {
    let g = LabGuard::up("vethgone", 1, TorKind::None).await;
    let b = g
        .lab
        .add_pod(&PodSpec {
            name: "b".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let st = g.state();
    let node = &st.nodes[0];
    let host_if = b.result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let log_path = node.felix.as_ref().unwrap().log.clone();
    let before = std::fs::read_to_string(&log_path).unwrap().len();
    sys::ip_in(&node.netns, &["link", "del", &host_if]).unwrap();

    let after = || std::fs::read_to_string(&log_path).unwrap()[before..].to_string();
    eventually(
        "felix to report the missing interface",
        Duration::from_secs(5),
        || {
            if after().contains("host interface is missing") {
                Ok(())
            } else {
                Err(after())
            }
        },
    );
    // Past a periodic resync (10 s): still reported once, and nothing failing every second.
    std::thread::sleep(Duration::from_secs(12));
    let log = after();
    let reports = log.matches("host interface is missing").count();
    assert_eq!(reports, 1, "reported once:\n{log}");
    assert!(
        !log.contains("reconcile failed"),
        "felix keeps failing over the missing interface:\n{log}"
    );

    let bin = st.bin_dir.join("twillctl");
    let out = Command::new(&bin)
        .args(["ipam", "check"])
        .envs(g.lab.env(1).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "ipam check finds a problem: {text}"
    );
    assert!(
        text.contains("interface missing") && text.contains("default/b") && text.contains(&host_if),
        "ipam check names the endpoint and its interface: {text}"
    );
}
