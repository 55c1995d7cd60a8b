//! Faults in the lab: while the datastore is frozen (etcd stopped with SIGSTOP, its
//! connections open and silent) every CNI ADD answers "try again later" (code 11) within
//! seconds instead of hanging the runtime, and felix logs each failed ADD; felix killed
//! with SIGKILL in the middle of concurrent ADDs strands nothing once it is back.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use twill_api::resources::WorkloadEndpoint;
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

/// ADD of container `id` into the lab namespace `ns`, as a runtime runs it.
fn add_in(
    node_ns: &str,
    bin: &std::path::Path,
    conf: &str,
    id: &str,
    ns: &str,
) -> twill_tests::PluginRun {
    let path = format!("/var/run/netns/{ns}");
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", path.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    run_plugin(node_ns, bin, &env, conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn felix_killed_during_concurrent_adds_strands_nothing_once_restarted() {
    let g = LabGuard::up("kill9", 1, TorKind::None).await;
    let lab = &g.lab;
    let keep = lab
        .add_pod(&PodSpec {
            name: "keep".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let gone = lab
        .add_pod(&PodSpec {
            name: "gone".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let st = g.state();
    let node = st.nodes[0].clone();
    let bin = st.cni_bin_dir.join("twill");
    let conf = single_conf(&st, 0).to_string();
    let netns: Vec<String> = (0..8).map(|i| format!("{}-k{i}", st.name)).collect();
    for ns in &netns {
        sys::netns_add(ns).unwrap();
        twillctl::lab::state::update(&st.name, |s| s.namespaces.push(ns.clone())).unwrap();
    }

    // Eight ADDs at once, and felix is killed while they run.
    let runs: Vec<_> = netns
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let (node_ns, bin, conf, ns) =
                (node.netns.clone(), bin.clone(), conf.clone(), ns.clone());
            std::thread::spawn(move || add_in(&node_ns, &bin, &conf, &format!("k9-{i}"), &ns))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    let felix = node.felix.as_ref().unwrap().pid;
    kill(Pid::from_raw(felix), Signal::SIGKILL).unwrap();
    let mut live = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        let run = run.join().unwrap();
        if run.status == 0 {
            let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
            let ip = v["ips"][0]["address"].as_str().unwrap();
            live.push((format!("k9-{i}"), ip.split('/').next().unwrap().to_string()));
        } else {
            // The runtime gives up on a sandbox whose ADD failed: its namespace goes.
            sys::netns_del(&netns[i]).unwrap();
        }
    }

    // What a kill at the worst moment leaves, made certain: an allocation whose ADD never
    // recorded an endpoint, and an endpoint whose container is gone.
    let ds = lab.datastore().await.unwrap();
    let ipam = twill_ipam::allocator::Ipam::new(ds.clone());
    let request = |handle: &str| twill_ipam::allocator::Request {
        handle: handle.into(),
        node: node.name.clone(),
        attrs: BTreeMap::from([("container".to_string(), handle.to_string())]),
        v4: true,
        v6: false,
    };
    ipam.allocate(&request("twill.k9-stranded")).await.unwrap();
    // The container of a pod felix had added goes away while felix is down.
    sys::netns_del(&gone.netns).unwrap();
    twillctl::lab::state::update(&st.name, |s| {
        s.pods.retain(|p| p.name != "gone");
        s.namespaces.retain(|n| n != &gone.netns);
    })
    .unwrap();

    lab.stop_felix(1).unwrap();
    lab.start_felix(1, "nftables").unwrap();

    // Every allocation of the node belongs to a live pod's endpoint, and back.
    let expected: BTreeSet<String> = live
        .iter()
        .map(|(id, _)| format!("twill.{id}"))
        .chain([format!("twill.{}", keep.container_id)])
        .collect();
    let mut last = String::new();
    for _ in 0..120 {
        let inv = Inventory::load(&ds, WorkloadSource::Endpoints)
            .await
            .unwrap();
        let handles: BTreeSet<String> = inv.used().map(|(_, _, a)| a.handle.clone()).collect();
        let weps = ds.list::<WorkloadEndpoint>(None).await.unwrap().items;
        let endpoints: BTreeSet<String> = weps
            .iter()
            .filter_map(|w| w.spec.ipam_handle_id.clone())
            .collect();
        if handles == expected && endpoints == expected {
            last.clear();
            break;
        }
        last = format!("allocations {handles:?}, endpoints {endpoints:?}, live {expected:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(last.is_empty(), "stranded after felix's restart: {last}");
    // No live pod was harmed: keep still has its address and its interface, and reaches
    // every pod whose ADD succeeded.
    let links = sys::ip_in(&node.netns, &["-o", "link", "show"]).unwrap();
    let tw = links.lines().filter(|l| l.contains(": tw")).count();
    assert_eq!(tw, live.len() + 1, "one host veth per live pod: {links}");
    let addr = sys::exec_in(&keep.netns, "ip", &["-o", "addr", "show", "eth0"]).unwrap();
    assert!(addr.contains(&keep.ips[0]), "keep kept its address: {addr}");
    for (id, ip) in &live {
        eventually(
            &format!("keep reaches {id}"),
            Duration::from_secs(10),
            || {
                if twillctl::lab::picture::ping(&keep.netns, ip) {
                    Ok(())
                } else {
                    Err(format!("no reply from {ip}"))
                }
            },
        );
    }
    let log = std::fs::read_to_string(&g.state().nodes[0].felix.as_ref().unwrap().log).unwrap();
    assert!(
        log.contains("default/gone") && log.contains("twill.k9-stranded"),
        "felix reports what it reclaimed:\n{log}"
    );
}
