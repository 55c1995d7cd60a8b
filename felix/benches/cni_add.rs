//! CNI ADD latency as the runtime sees it (exec of the plugin until it exits with the
//! result), `twill` → felix's agent (in-memory IPAM, real veths and routes) next to the
//! reference `ptp` + `host-local` plugins doing a routed veth with file-based IPAM, on the
//! same machine in the same run: 200 sequential ADDs and 50 concurrent ADDs each.
//!
//! Not run in CI. Run as root:
//!   cargo build --release -p twill-cni-plugin && cargo bench -p twill-felix --bench cni_add
//!
//! The whole measurement runs inside a "node" network namespace (the process re-executes
//! itself under `ip netns exec`), so both plugins are plain children in that namespace and
//! nothing touches the root namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use twill_felix::cni::memory::{MemoryEndpoints, MemoryIpam};
use twill_felix::cni::{AgentService, CniService, bind, serve};
use twill_felix::dataplane::PodNetwork;
use twill_harness::netns::Netns;

const SEQUENTIAL: usize = 200;
const CONCURRENT: usize = 50;
const INNER: &str = "TWILL_BENCH_INNER";

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    let node = Netns::new("twbench-node").expect("node netns");
    let exe = std::env::current_exe().expect("exe");
    let status = node
        .command(&exe)
        .env(INNER, "1")
        .status()
        .expect("run inside the node namespace");
    assert!(status.success(), "benchmark failed: {status}");
}

/// A plugin under test: how to exec it for one pod.
struct Plugin {
    name: &'static str,
    bin: PathBuf,
    conf: Value,
}

impl Plugin {
    fn exec(&self, command: &str, id: &str, netns: &Path) -> Duration {
        let start = Instant::now();
        let mut child = Command::new(&self.bin)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_ARGS",
                format!("K8S_POD_NAMESPACE=bench;K8S_POD_NAME={id}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let elapsed = start.elapsed();
        assert!(
            out.status.success(),
            "{} {command} {id} failed: {} {}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        elapsed
    }
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let pct = |p: f64| {
        v[((v.len() as f64 * p).ceil() as usize)
            .saturating_sub(1)
            .min(v.len() - 1)]
    };
    Stats {
        p50: pct(0.50),
        p99: pct(0.99),
        mean: v.iter().sum::<Duration>() / v.len() as u32,
        max: v[v.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn sequential(p: &Plugin, tag: &str) -> Stats {
    let pods: Vec<Netns> = (0..SEQUENTIAL)
        .map(|_| Netns::new("twbench-pod").unwrap())
        .collect();
    let mut lat = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        lat.push(p.exec("ADD", &format!("{tag}s{i}"), &pod.path()));
    }
    for (i, pod) in pods.iter().enumerate() {
        p.exec("DEL", &format!("{tag}s{i}"), &pod.path());
    }
    stats(lat)
}

fn concurrent(p: &Arc<Plugin>, tag: &str) -> (Stats, Duration) {
    let pods: Vec<Netns> = (0..CONCURRENT)
        .map(|_| Netns::new("twbench-pod").unwrap())
        .collect();
    let barrier = Arc::new(Barrier::new(CONCURRENT + 1));
    let mut threads = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let (p, b, path, id) = (p.clone(), barrier.clone(), pod.path(), format!("{tag}c{i}"));
        threads.push(std::thread::spawn(move || {
            b.wait();
            p.exec("ADD", &id, &path)
        }));
    }
    barrier.wait();
    let start = Instant::now();
    let lat: Vec<Duration> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let wall = start.elapsed();
    for (i, pod) in pods.iter().enumerate() {
        p.exec("DEL", &format!("{tag}c{i}"), &pod.path());
    }
    (stats(lat), wall)
}

fn inner() {
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap();
    let twill = release.join("twill");
    assert!(
        twill.exists(),
        "build it first: cargo build --release -p twill-cni-plugin"
    );
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let ipam = Arc::new(MemoryIpam::new(vec!["10.244.0.0/22".parse().unwrap()]));
    let s = socket.clone();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.block_on(async move {
        let pods = Arc::new(PodNetwork::new().unwrap());
        let service = CniService::new(ipam, Arc::new(MemoryEndpoints::new()), pods, 1500);
        let listener = bind(&s).unwrap();
        tokio::spawn(serve(
            listener,
            AgentService::new(Arc::new(service)),
            async move {
                let _ = stopped.await;
            },
        ));
    });

    let twill = Arc::new(Plugin {
        name: "twill",
        bin: twill,
        conf: json!({"cniVersion": "1.0.0", "name": "twill", "type": "twill",
                     "agent_socket": socket, "mtu": 1500}),
    });
    let reference = Arc::new(Plugin {
        name: "ptp+host-local",
        bin: PathBuf::from("/usr/lib/cni/ptp"),
        conf: json!({"cniVersion": "1.0.0", "name": "ref", "type": "ptp", "ipMasq": false,
                     "mtu": 1500,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.245.0.0/22"}]],
                              "dataDir": dir.path().join("host-local")}}),
    });
    // Warm the page cache and the agent connection path.
    for p in [&twill, &reference] {
        let pod = Netns::new("twbench-pod").unwrap();
        p.exec("ADD", "warm", &pod.path());
        p.exec("DEL", "warm", &pod.path());
    }
    let t_seq = sequential(&twill, "t");
    let r_seq = sequential(&reference, "r");
    let (t_con, t_wall) = concurrent(&twill, "t");
    let (r_con, r_wall) = concurrent(&reference, "r");

    println!("| run | plugin | p50 ms | p99 ms | mean ms | max ms | wall ms |");
    println!("|---|---|---|---|---|---|---|");
    let row = |run: &str, name: &str, s: Stats, wall: Option<Duration>| {
        println!(
            "| {run} | {name} | {} | {} | {} | {} | {} |",
            ms(s.p50),
            ms(s.p99),
            ms(s.mean),
            ms(s.max),
            wall.map(ms).unwrap_or_else(|| "-".into())
        );
    };
    row("200 sequential", "twill", t_seq, None);
    row("200 sequential", "ptp+host-local", r_seq, None);
    row("50 concurrent", "twill", t_con, Some(t_wall));
    row("50 concurrent", "ptp+host-local", r_con, Some(r_wall));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!();
    println!(
        "ratios twill/reference: sequential p50 {:.2}x p99 {:.2}x; concurrent p50 {:.2}x p99 {:.2}x",
        ratio(t_seq.p50, r_seq.p50),
        ratio(t_seq.p99, r_seq.p99),
        ratio(t_con.p50, r_con.p50),
        ratio(t_con.p99, r_con.p99)
    );
}
