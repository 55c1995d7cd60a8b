//! The lab supervises what it starts, as a kubelet would: a killed IPAM controller or
//! felix is started again (with back-off) and `lab status` counts the restarts; a felix
//! stopped on purpose stays stopped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use twill_tests::{LabGuard, eventually};
use twillctl::lab::{TorKind, sys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_processes_come_back_and_a_stopped_felix_stays_stopped() {
    let g = LabGuard::up("superv", 1, TorKind::None).await;
    let st = g.state();
    let ipam = st
        .processes
        .iter()
        .find(|p| p.name == "ipam-controller")
        .unwrap()
        .clone();
    let felix = st.nodes[0].felix.clone().unwrap();
    kill(Pid::from_raw(ipam.pid), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(felix.pid), Signal::SIGKILL).unwrap();
    eventually("both to be restarted", Duration::from_secs(20), || {
        let st = g.state();
        let i = st
            .processes
            .iter()
            .find(|p| p.name == "ipam-controller")
            .unwrap();
        let f = st.nodes[0].felix.as_ref().unwrap();
        if i.pid != ipam.pid
            && sys::alive(i)
            && i.restarts == 1
            && f.pid != felix.pid
            && sys::alive(f)
            && f.restarts == 1
        {
            Ok(())
        } else {
            Err(format!("{i:?} {f:?}"))
        }
    });
    let mut out = Vec::new();
    g.lab.picture(&mut out, false).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let i = line("ipam-controller");
    assert_eq!((i[1], i[3]), ("up", "1"), "lab status: {text}");
    let f = line("felix-node1");
    assert_eq!((f[1], f[3]), ("up", "1"), "lab status: {text}");

    // Stopped on purpose: not restarted.
    let running = g.state().nodes[0].felix.clone().unwrap();
    g.lab.stop_felix(1).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(!sys::alive(&running), "felix still runs");
    assert!(
        g.state().nodes[0].felix.is_none(),
        "the supervisor started a felix that was stopped on purpose"
    );
}
