//! The CNI contract in the lab: a `twill` + `portmap` configuration list gives a working
//! host port into a pod; bad requests get the spec's error code and change nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the report

use std::process::{Command, Stdio};
use std::time::Duration;

use twill_api::resources::WorkloadEndpoint;
use twill_tests::{LabGuard, eventually};
use twillctl::lab::{PodSpec, PortMapping, TorKind, sys};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portmap_chained_after_twill_publishes_a_host_port() {
    let g = LabGuard::up("chain", 1, TorKind::None).await;
    let lab = &g.lab;
    let web = lab
        .add_pod(&PodSpec {
            name: "web".into(),
            node: 1,
            ports: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    // A one-shot server in the pod, answering "hello from web".
    let mut server = Command::new("ip")
        .args(["netns", "exec", &web.netns, "sh", "-c"])
        .arg("echo 'hello from web' | nc -l -N -p 80 -q 1 || echo 'hello from web' | nc -l 80")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = g.state();
    let node = &st.nodes[0];
    // From the ToR (outside the node), to the node's address and the published port.
    let mut reply = String::new();
    eventually("the host port answers", Duration::from_secs(10), || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &st.tor_netns,
                "nc",
                "-w",
                "2",
                &node.address,
                "8080",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        reply = String::from_utf8_lossy(&out.stdout).into_owned();
        if reply.contains("hello from web") {
            Ok(())
        } else {
            Err(format!("got {reply:?}"))
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    lab.del_pod("web").await.unwrap();
    // iptables-save must answer: an empty output from a failed run would read as "no rule".
    let nat = sys::exec_in(&node.netns, "iptables-save", &["-t", "nat"]).unwrap();
    assert!(
        !nat.contains("8080"),
        "portmap's rules are gone after DEL: {nat}"
    );
}

/// Runs the `twill` plugin in the node's namespace with this environment and stdin.
fn plugin(ns: &str, bin: &std::path::Path, env: &[(&str, &str)], stdin: &str) -> (i32, String) {
    let run = twill_tests::run_plugin(ns, bin, env, stdin);
    (run.status, run.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_status_and_gc_against_the_real_agent() {
    let g = LabGuard::up("ckgc", 1, TorKind::None).await;
    let lab = &g.lab;
    let keep = lab
        .add_pod(&PodSpec {
            name: "keep".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let stale = lab
        .add_pod(&PodSpec {
            name: "stale".into(),
            node: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let st = g.state();
    let node = &st.nodes[0];
    let bin = st.cni_bin_dir.join("twill");
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&node.conflist).unwrap()).unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["name"] = "twill".into();
    conf["cniVersion"] = "1.1.0".into();

    // CHECK with the ADD result as prevResult: the interface, addresses and routes are there.
    let mut check = conf.clone();
    check["prevResult"] = keep.result.clone();
    let keep_netns = format!("/var/run/netns/{}", keep.netns);
    let check_env = [
        ("CNI_COMMAND", "CHECK"),
        ("CNI_CONTAINERID", keep.container_id.as_str()),
        ("CNI_NETNS", keep_netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let (status, out) = plugin(&node.netns, &bin, &check_env, &check.to_string());
    assert_eq!(status, 0, "CHECK of a healthy pod: {out}");
    // CHECK notices a pod whose address was removed behind its back.
    sys::exec_in(&keep.netns, "ip", &["addr", "flush", "dev", "eth0"]).unwrap();
    let (status, out) = plugin(&node.netns, &bin, &check_env, &check.to_string());
    assert_eq!(status, 1, "CHECK of a broken pod fails: {out}");

    // STATUS: felix can allocate.
    let (status, out) = plugin(
        &node.netns,
        &bin,
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/usr/lib/cni")],
        &conf.to_string(),
    );
    assert_eq!(status, 0, "STATUS: {out}");

    // GC with only `keep` valid: `stale` loses its interface and address.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] =
        serde_json::json!([{ "containerID": keep.container_id, "ifname": "eth0" }]);
    let (status, out) = plugin(
        &node.netns,
        &bin,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &gc.to_string(),
    );
    assert_eq!(status, 0, "GC: {out}");
    let ds = lab.datastore().await.unwrap();
    let weps = ds.list::<WorkloadEndpoint>(None).await.unwrap().items;
    let pods: Vec<_> = weps.iter().filter_map(|w| w.spec.pod.clone()).collect();
    assert_eq!(
        pods,
        ["keep"],
        "GC left only the valid attachment's endpoint"
    );
    let inv = twill_ipam::inventory::Inventory::load(
        &ds,
        twill_ipam::inventory::WorkloadSource::Endpoints,
    )
    .await
    .unwrap();
    let used: Vec<String> = inv.used().map(|(ip, _, _)| ip.to_string()).collect();
    assert_eq!(
        used, keep.ips,
        "GC released the stale pod's address {:?}",
        stale.ips
    );
    let stale_links =
        sys::exec_in(&stale.netns, "ip", &["-o", "link", "show", "eth0"]).unwrap_or_default();
    assert!(
        stale_links.is_empty(),
        "the stale pod's interface is gone: {stale_links}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_without_valid_attachments_is_refused_and_every_pod_stays() {
    let g = LabGuard::up("gcnone", 1, TorKind::None).await;
    let lab = &g.lab;
    let mut pods = Vec::new();
    for name in ["p1", "p2"] {
        let pod = lab
            .add_pod(&PodSpec {
                name: name.into(),
                node: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        pods.push(pod);
    }
    let st = g.state();
    let node = &st.nodes[0];
    let bin = st.cni_bin_dir.join("twill");
    let list: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&node.conflist).unwrap()).unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["name"] = "twill".into();
    conf["cniVersion"] = "1.1.0".into();

    // A GC that does not name its valid attachments: invalid configuration, not "none".
    let (status, out) = plugin(
        &node.netns,
        &bin,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &conf.to_string(),
    );
    assert_eq!((status, code(&out)), (1, 7), "GC without a list: {out}");

    let ds = lab.datastore().await.unwrap();
    let weps = ds.list::<WorkloadEndpoint>(None).await.unwrap().items;
    let mut names: Vec<_> = weps.iter().filter_map(|w| w.spec.pod.clone()).collect();
    names.sort();
    assert_eq!(names, ["p1", "p2"], "every endpoint stays");
    let inv = twill_ipam::inventory::Inventory::load(
        &ds,
        twill_ipam::inventory::WorkloadSource::Endpoints,
    )
    .await
    .unwrap();
    assert_eq!(inv.used().count(), 2, "every address stays allocated");
    assert!(
        twillctl::lab::picture::ping(&pods[0].netns, &pods[1].ips[0]),
        "p1 still reaches p2"
    );
}

fn code(out: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["code"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cni_requests_get_spec_codes_and_change_nothing() {
    let g = LabGuard::up("badcni", 1, TorKind::None).await;
    let st = g.state();
    let node = &st.nodes[0];
    let bin = st.cni_bin_dir.join("twill");
    let conf = std::fs::read_to_string(&node.conflist).unwrap();
    let list: serde_json::Value = serde_json::from_str(&conf).unwrap();
    let mut single = list["plugins"][0].clone();
    single["name"] = "twill".into();
    single["cniVersion"] = "1.0.0".into();
    let good = single.to_string();
    sys::netns_add(&format!("{}-victim", st.name)).unwrap();
    let netns = format!("/var/run/netns/{}-victim", st.name);
    let env = |id: &'static str, netns: &'static str| {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
        ]
    };
    let netns_static: &'static str = Box::leak(netns.clone().into_boxed_str());

    let (status, out) = plugin(&node.netns, &bin, &env("c1", netns_static), "{not json");
    assert_eq!((status, code(&out)), (1, 6), "malformed JSON: {out}");
    let (status, out) = plugin(&node.netns, &bin, &env("bad/id!", netns_static), &good);
    assert_eq!((status, code(&out)), (1, 4), "bad container id: {out}");
    assert!(out.contains("CNI_CONTAINERID"), "names the variable: {out}");
    let mut old = single.clone();
    old["cniVersion"] = "9.9.9".into();
    let (status, out) = plugin(
        &node.netns,
        &bin,
        &env("c1", netns_static),
        &old.to_string(),
    );
    assert_eq!((status, code(&out)), (1, 1), "unknown version: {out}");
    let (status, out) = plugin(&node.netns, &bin, &env("c1", "/var/run/netns/nope"), &good);
    assert_eq!(status, 1, "missing netns: {out}");
    assert!(
        [3, 4, 7, 11].contains(&code(&out)),
        "missing netns gets a spec error code: {out}"
    );

    // Nothing changed: no endpoint, no allocation, no pod link.
    let ds = g.lab.datastore().await.unwrap();
    let weps = ds.list::<WorkloadEndpoint>(None).await.unwrap().items;
    assert!(weps.is_empty(), "endpoints recorded: {weps:?}");
    let inv = twill_ipam::inventory::Inventory::load(
        &ds,
        twill_ipam::inventory::WorkloadSource::Endpoints,
    )
    .await
    .unwrap();
    assert_eq!(
        inv.used().count(),
        0,
        "addresses allocated by failed requests"
    );
    let links = sys::ip_in(&node.netns, &["-o", "link", "show"]).unwrap();
    assert!(!links.contains(": tw"), "pod links left: {links}");
    sys::netns_del(&format!("{}-victim", st.name)).unwrap();
}
