//! Whole-system figures of the lab (issue 5), as a bench binary (not run in CI):
//!
//! 1. CNI ADD latency as the runtime sees it (exec of the plugin until it exits with the
//!    result): `twill` → the real felix with etcd, 200 sequential and 50 concurrent ADDs,
//!    next to the reference `ptp` + `host-local` plugins (a routed veth with file-based
//!    IPAM) on the same machine in the same run.
//! 2. Route convergence: from the start of the CNI ADD of the first pod of a new block on
//!    node A (the IPAM controller stopped, so felix claims the block itself: the slow
//!    path) until node B and the ToR have the block's route.
//! 3. felix's memory with 3 nodes and 100 pods each.
//! 4. Per-packet cost of policy as policies grow: TCP connect latency between two pods on
//!    different nodes (the server isolated by one policy that allows the client) with 0,
//!    100 and 1,000 other policies in force (nftables).
//!
//! Run as root, after a release build of the binaries:
//!   cargo build --release --workspace --bins && cargo bench -p twill-tests --bench lab
//! `TWILL_BENCH_PARTS=cni,converge,rss,policy` picks parts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // a benchmark

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twill_api::resources::native::NetworkPolicy;
use twill_tests::{LabGuard, unique_name};
use twillctl::lab::{LabSpec, PodSpec, TorKind, sys};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn stats(name: &str, mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
    println!(
        "  {name:<40} n={:<4} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        v.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        v.last().unwrap().as_secs_f64() * 1e3
    );
    (p50, p99)
}

/// Execs one plugin with a configuration in `ns`, returns the wall time; panics on failure.
fn exec(
    ns: &str,
    bin: &Path,
    cni_path: &Path,
    command: &str,
    id: &str,
    netns: &str,
    conf: &Value,
) -> Duration {
    let cni_path = cni_path.to_string_lossy();
    let env = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", cni_path.as_ref()),
    ];
    let run = twill_tests::run_plugin(ns, bin, &env, &conf.to_string());
    assert_eq!(
        run.status,
        0,
        "{} {command} {id}: {}",
        bin.display(),
        run.stdout
    );
    run.elapsed
}

struct Target {
    name: &'static str,
    node_ns: String,
    bin: std::path::PathBuf,
    cni_path: std::path::PathBuf,
    conf: Value,
}

fn run_adds(t: &Target, prefix: &str, seq: usize, conc: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut namespaces = Vec::new();
    for i in 0..seq + conc {
        let ns = format!("{prefix}{i}");
        sys::netns_add(&ns).unwrap();
        namespaces.push(ns);
    }
    let path = |ns: &str| format!("/var/run/netns/{ns}");
    let sequential: Vec<Duration> = (0..seq)
        .map(|i| {
            exec(
                &t.node_ns,
                &t.bin,
                &t.cni_path,
                "ADD",
                &format!("{prefix}s{i}"),
                &path(&namespaces[i]),
                &t.conf,
            )
        })
        .collect();
    let barrier = Arc::new(Barrier::new(conc));
    let concurrent: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conc)
            .map(|i| {
                let barrier = barrier.clone();
                let ns = path(&namespaces[seq + i]);
                s.spawn(move || {
                    barrier.wait();
                    exec(
                        &t.node_ns,
                        &t.bin,
                        &t.cni_path,
                        "ADD",
                        &format!("{prefix}c{i}"),
                        &ns,
                        &t.conf,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Clean up: DEL everything, then the namespaces.
    for (i, ns) in namespaces.iter().enumerate() {
        let id = if i < seq {
            format!("{prefix}s{i}")
        } else {
            format!("{prefix}c{}", i - seq)
        };
        exec(
            &t.node_ns,
            &t.bin,
            &t.cni_path,
            "DEL",
            &id,
            &path(ns),
            &t.conf,
        );
        sys::netns_del(ns).unwrap();
    }
    (sequential, concurrent)
}

async fn cni_latency() {
    println!("\n## CNI ADD latency (exec of the plugin until its result)");
    let g = LabGuard::up("bcni", 1, TorKind::None).await;
    let st = g.state();
    let node = &st.nodes[0];
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(&node.conflist).unwrap()).unwrap();
    let mut twill_conf = list["plugins"][0].clone();
    twill_conf["name"] = "twill".into();
    twill_conf["cniVersion"] = "1.0.0".into();
    let twill = Target {
        name: "twill (real felix, etcd)",
        node_ns: node.netns.clone(),
        bin: st.cni_bin_dir.join("twill"),
        cni_path: st.cni_bin_dir.clone(),
        conf: twill_conf,
    };
    // The reference in a node namespace of its own (its addresses must not meet Twill's).
    let ref_ns = format!("{}-ref", st.name);
    sys::netns_add(&ref_ns).unwrap();
    sys::sysctl_in(&ref_ns, "net.ipv4.ip_forward", "1").unwrap();
    let data = tempfile::tempdir().unwrap();
    let reference = Target {
        name: "ptp + host-local (reference)",
        node_ns: ref_ns.clone(),
        bin: "/usr/lib/cni/ptp".into(),
        cni_path: "/usr/lib/cni".into(),
        conf: json!({
            "cniVersion": "1.0.0", "name": "ref", "type": "ptp", "ipMasq": false, "mtu": 1500,
            "ipam": { "type": "host-local", "dataDir": data.path(),
                      "ranges": [[{ "subnet": "10.244.64.0/18" }]] }
        }),
    };
    let mut rows = Vec::new();
    for round in 0..2 {
        // Alternate the order so neither always runs on a warmer machine.
        let order: [&Target; 2] = if round == 0 {
            [&twill, &reference]
        } else {
            [&reference, &twill]
        };
        for t in order {
            let prefix = format!(
                "{}-{}{round}-",
                st.name,
                if t.name.starts_with("twill") {
                    "t"
                } else {
                    "r"
                }
            );
            let (s, c) = run_adds(t, &prefix, 200, 50);
            println!(" round {round}, {}:", t.name);
            let seq = stats("200 sequential", s);
            let conc = stats("50 concurrent", c);
            rows.push((t.name, round, seq, conc));
        }
    }
    sys::netns_del(&ref_ns).unwrap();
    for round in 0..2 {
        let get = |prefix: &str| {
            rows.iter()
                .find(|r| r.1 == round && r.0.starts_with(prefix))
                .unwrap()
        };
        let (t, r) = (get("twill"), get("ptp"));
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            " round {round} ratios twill/reference: sequential p50 {:.2}x p99 {:.2}x; concurrent p50 {:.2}x p99 {:.2}x",
            ratio(t.2.0, r.2.0),
            ratio(t.2.1, r.2.1),
            ratio(t.3.0, r.3.0),
            ratio(t.3.1, r.3.1)
        );
    }
}

/// Records when each prefix first appears in `ns`'s routes of `proto`.
fn watch_routes(
    ns: String,
    proto: &'static str,
    stop: Arc<AtomicBool>,
    seen: Arc<RwLock<BTreeMap<String, Instant>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let out = sys::ip_in(&ns, &["route", "show", "proto", proto]).unwrap_or_default();
            let now = Instant::now();
            let mut seen = seen.write().unwrap();
            for line in out.lines().filter(|l| !l.starts_with(char::is_whitespace)) {
                if let Some(prefix) = line.split_whitespace().next() {
                    seen.entry(prefix.to_string()).or_insert(now);
                }
            }
        }
    })
}

async fn convergence() {
    println!("\n## Route convergence (first pod of a new block on node1 -> node2 and ToR)");
    let g = LabGuard::up("bconv", 2, TorKind::Bird).await;
    let st = g.state();
    // Stop the IPAM controller: felix claims the new block itself (the slow path).
    let ctl = st
        .processes
        .iter()
        .find(|p| p.name == "ipam-controller")
        .unwrap();
    sys::stop(ctl, Duration::from_secs(5));
    let stop = Arc::new(AtomicBool::new(false));
    let at_b = Arc::new(RwLock::new(BTreeMap::new()));
    let at_tor = Arc::new(RwLock::new(BTreeMap::new()));
    let w1 = watch_routes(st.nodes[1].netns.clone(), "82", stop.clone(), at_b.clone());
    let w2 = watch_routes(st.tor_netns.clone(), "bird", stop.clone(), at_tor.clone());
    std::thread::sleep(Duration::from_millis(500));
    let mut known: BTreeSet<String> = at_b.read().unwrap().keys().cloned().collect();
    let mut samples_b = Vec::new();
    let mut samples_tor = Vec::new();
    let mut i = 0;
    while samples_b.len() < 5 && i < 400 {
        let before: BTreeSet<String> = at_b.read().unwrap().keys().cloned().collect();
        known.extend(before);
        let start = Instant::now();
        let pod = g
            .lab
            .add_pod(&PodSpec {
                name: format!("c{i}"),
                node: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        i += 1;
        let ip: std::net::Ipv4Addr = pod.ips[0].parse().unwrap();
        let new_block = known.iter().all(|b| {
            let net: ipnet::Ipv4Net = b.parse().unwrap_or_default();
            !net.contains(&ip)
        });
        if !new_block {
            continue;
        }
        // Wait (bounded) for the new block to show up at B and the ToR.
        let deadline = Instant::now() + Duration::from_secs(10);
        let find = |m: &RwLock<BTreeMap<String, Instant>>| {
            m.read().unwrap().iter().find_map(|(p, t)| {
                let net: ipnet::Ipv4Net = p.parse().ok()?;
                net.contains(&ip).then_some(*t)
            })
        };
        while (find(&at_b).is_none() || find(&at_tor).is_none()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let (Some(tb), Some(tt)) = (find(&at_b), find(&at_tor)) else {
            println!("  block of {ip} never reached node2/ToR within 10 s");
            continue;
        };
        samples_b.push(tb.saturating_duration_since(start));
        samples_tor.push(tt.saturating_duration_since(start));
        println!(
            "  pod {ip}: node2 after {:.1} ms, ToR after {:.1} ms",
            tb.saturating_duration_since(start).as_secs_f64() * 1e3,
            tt.saturating_duration_since(start).as_secs_f64() * 1e3
        );
    }
    stop.store(true, Ordering::Relaxed);
    w1.join().unwrap();
    w2.join().unwrap();
    if !samples_b.is_empty() {
        stats("to node2 (kernel, proto 82)", samples_b);
        stats("to the ToR (BIRD, kernel)", samples_tor);
    }
    println!("  (route polling resolution: one `ip route show` per loop, ~2-5 ms)");
}

fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn rss() {
    println!("\n## felix memory with 3 nodes and 100 pods each");
    let mut spec = LabSpec::new(&unique_name("brss"), 3).unwrap();
    spec.tor = TorKind::Bird;
    let g = LabGuard::up_with(spec).await;
    let st = g.state();
    let before: Vec<(u64, u64)> = st
        .nodes
        .iter()
        .map(|n| rss_kib(n.felix.as_ref().unwrap().pid))
        .collect();
    for chunk in (0..300).collect::<Vec<_>>().chunks(20) {
        let adds = chunk.iter().map(|i| {
            let spec = PodSpec {
                name: format!("r{i}"),
                node: i % 3 + 1,
                ..Default::default()
            };
            let lab = g.lab.clone();
            async move { lab.add_pod(&spec).await }
        });
        for r in futures::future::join_all(adds).await {
            r.unwrap();
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    let st = g.state();
    for (i, n) in st.nodes.iter().enumerate() {
        let (rss, hwm) = rss_kib(n.felix.as_ref().unwrap().pid);
        println!(
            "  {}: {} pods, felix RSS {:.1} MiB (peak {:.1} MiB); with no pods it was {:.1} MiB",
            n.name,
            st.pods.iter().filter(|p| p.node == i).count(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            before[i].0 as f64 / 1024.0
        );
    }
}

fn network_policy(name: &str, select: &str, from: &str) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "podSelector": { "matchLabels": { "app": select } },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": [{ "podSelector": { "matchLabels": { "app": from } } }],
                          "ports": [{ "protocol": "TCP", "port": 80 }] }]
        }
    }))
    .unwrap()
}

/// Connect latencies (connect, read "ok", close) from inside `netns`.
fn connects(netns: &Path, to: std::net::SocketAddr, n: usize) -> Vec<Duration> {
    let path = netns.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        (0..n)
            .map(|_| {
                let start = Instant::now();
                let mut s =
                    std::net::TcpStream::connect_timeout(&to, Duration::from_secs(1)).unwrap();
                let mut buf = [0u8; 2];
                std::io::Read::read_exact(&mut s, &mut buf).unwrap();
                start.elapsed()
            })
            .collect()
    })
    .join()
    .unwrap()
}

async fn per_packet() {
    println!("\n## Per-packet cost: TCP connect latency with 0, 100 and 1,000 other policies");
    let mut spec = LabSpec::new(&unique_name("bpkt"), 2).unwrap();
    spec.tor = TorKind::None;
    let g = LabGuard::up_with(spec).await;
    let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
    let server = g
        .lab
        .add_pod(&PodSpec {
            name: "server".into(),
            node: 2,
            labels: labels("server"),
            ..Default::default()
        })
        .await
        .unwrap();
    let client = g
        .lab
        .add_pod(&PodSpec {
            name: "client".into(),
            node: 1,
            labels: labels("client"),
            ..Default::default()
        })
        .await
        .unwrap();
    let server_ns = twill_tests::probe::netns_path(&server.netns);
    twill_tests::probe::serve(&server_ns, &[(twill_tests::probe::Proto::Tcp, 80)]).unwrap();
    let ds = g.lab.datastore().await.unwrap();
    ds.create(&network_policy("server", "server", "client"))
        .await
        .unwrap();
    let st = g.state();
    let to = std::net::SocketAddr::new(server.ips[0].parse().unwrap(), 80);
    let client_ns = twill_tests::probe::netns_path(&client.netns);
    let mut installed = 0;
    for target in [0usize, 100, 1000] {
        for i in installed..target {
            ds.create(&network_policy(
                &format!("other-{i}"),
                &format!("svc-{i}"),
                &format!("cli-{i}"),
            ))
            .await
            .unwrap();
        }
        installed = target;
        // Wait until both nodes' tables hold every policy's chain.
        for n in &st.nodes {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let table = sys::exec_in(&n.netns, "nft", &["list", "table", "inet", "twill"])
                    .unwrap_or_default();
                let chains = table
                    .lines()
                    .filter(|l| l.trim_start().starts_with("chain pi-"))
                    .count();
                if chains > target || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        connects(&client_ns, to, 200); // warm-up
        let lat = connects(&client_ns, to, 3000);
        stats(&format!("{target} other policies, 3000 connects"), lat);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let parts =
        std::env::var("TWILL_BENCH_PARTS").unwrap_or_else(|_| "cni,converge,rss,policy".into());
    if parts.contains("cni") {
        cni_latency().await;
    }
    if parts.contains("converge") {
        convergence().await;
    }
    if parts.contains("rss") {
        rss().await;
    }
    if parts.contains("policy") {
        per_packet().await;
    }
}
