//! Faults in the lab: while the datastore is frozen (etcd stopped with SIGSTOP, its
//! connections open and silent) every CNI ADD answers "try again later" (code 11) within
//! seconds instead of hanging the runtime, and felix logs each failed ADD.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use twill_api::resources::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_ipam::inventory::{Inventory, WorkloadSource};
use twill_tests::{LabGuard, eventually, run_plugin};
use twillctl::lab::{PodSpec, TorKind, sys};

/// Stops a process with SIGSTOP and continues it on drop (even when the test fails).
struct Frozen(i32);

impl Frozen {
    fn freeze(pid: i32) -> Frozen {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

/// The first plugin of node `i`'s configuration list as a single network configuration.
fn single_conf(st: &twillctl::lab::State, i: usize) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&st.nodes[i].conflist).unwrap()).unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_add_during_a_datastore_freeze_answers_code_11_within_seconds() {
    let g = LabGuard::up("freeze", 1, TorKind::None).await;
    // One pod before the freeze: the path works and felix's caches are warm.
    g.lab
        .add_pod(&PodSpec {
            name: "before".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let st = g.state();
    let node = st.nodes[0].clone();
    let bin = st.cni_bin_dir.join("twill");
    let conf = single_conf(&st, 0).to_string();
    let etcd = st.processes.iter().find(|p| p.name == "etcd").unwrap().pid;
    let mut netns = Vec::new();
    for i in 0..3 {
        let name = format!("{}-fz{i}", st.name);
        sys::netns_add(&name).unwrap();
        twillctl::lab::state::update(&st.name, |s| s.namespaces.push(name.clone())).unwrap();
        netns.push(name);
    }

    let frozen = Frozen::freeze(etcd);
    let runs: Vec<_> = netns
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let (node_ns, bin, conf) = (node.netns.clone(), bin.clone(), conf.clone());
            let path = format!("/var/run/netns/{ns}");
            std::thread::spawn(move || {
                let id = format!("frozen{i}");
                let env = [
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", id.as_str()),
                    ("CNI_NETNS", path.as_str()),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_PATH", "/usr/lib/cni"),
                ];
                run_plugin(&node_ns, &bin, &env, &conf)
            })
        })
        .collect();
    for run in runs {
        let run = run.join().unwrap();
        assert_eq!(run.status, 1, "ADD during the freeze fails: {run:?}");
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(v["code"], 11, "try again later: {run:?}");
        assert!(
            run.elapsed < Duration::from_secs(15),
            "answered within seconds, not the plugin's deadline: {:?}",
            run.elapsed
        );
    }
    drop(frozen);
    let felix_log = node.felix.as_ref().unwrap().log.clone();
    let log = std::fs::read_to_string(&felix_log).unwrap();
    let failed = log
        .lines()
        .filter(|l| l.contains("ADD failed") && l.contains("frozen"))
        .count();
    assert!(failed >= 3, "felix logs each failed ADD:\n{log}");
}
