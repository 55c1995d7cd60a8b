//! BFD benchmark (a bench binary, not run by `cargo test` or CI), twill-bgpd next to BIRD
//! in the same role, same run, same machine:
//! - **detection**: a detector (twill-bgpd or BIRD) has BGP + BFD at 100 ms × 3 with a BIRD
//!   peer that announces 10.244.2.0/26; the peer is frozen (SIGSTOP: no FIN, no AdminDown)
//!   and we time until the detector's kernel no longer routes 10.244.2.0/26 (polled every
//!   5 ms). BGP's hold time is 90 s, so only BFD can explain a sub-second withdrawal.
//! - **ToR detection**: the other way round, as a rack sees a dead node: BIRD (the ToR)
//!   has BGP + BFD at 100 ms × 3 with a node (twill-bgpd, or BIRD) that announces
//!   10.244.2.0/26; the node is frozen and we time until the ToR's kernel drops the route.
//! - **cpu**: one speaker with 100 BFD sessions at 100 ms × 3 (BGP passive, never
//!   connected) to a BIRD holding the other ends; CPU seconds (user + system) the speaker
//!   uses over a window once all 100 are Up.
//!
//! ```text
//! cargo build --release -p twill-bgpd --bin twill-bgpd
//! TWILL_BGPD_BIN=target/release/twill-bgpd cargo bench -p twill-bgpd --bench bfd -- --runs 7 --window 20
//! ```
//! Needs root (namespaces) and BIRD 2. Prints Markdown with ratios to BIRD; results and
//! method: `bench-results/bfd.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Bird,
    Twill,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Bird => "BIRD",
            Kind::Twill => "twill-bgpd",
        }
    }
}

fn birdc(sock: &Path, args: &[&str]) -> String {
    Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn bird(ns: &Netns, dir: &Path, name: &str, conf: &str) -> (ChildGuard, PathBuf) {
    let c = dir.join(format!("{name}.conf"));
    let s = dir.join(format!("{name}.ctl"));
    std::fs::write(&c, conf).unwrap();
    let g = ChildGuard::spawn_in(
        ns,
        name,
        "bird",
        &["-f", "-c", c.to_str().unwrap(), "-s", s.to_str().unwrap()],
    )
    .unwrap();
    (g, s)
}

fn twill(ns: &Netns, dir: &Path, yaml: &str) -> ChildGuard {
    let conf = dir.join("bgpd.yaml");
    std::fs::write(&conf, yaml).unwrap();
    // TWILL_BGPD_BIN lets a debug-built bench drive a release-built speaker.
    let bin = std::env::var("TWILL_BGPD_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_twill-bgpd").to_owned());
    let mut cmd = ns.command(bin);
    cmd.arg("--config")
        .arg(&conf)
        .arg("--metrics-listen")
        .arg("127.0.0.1:9179");
    cmd.env("RUST_LOG", "warn");
    ChildGuard::spawn("twill-bgpd", cmd).unwrap()
}

/// User + system CPU seconds a process has used so far (USER_HZ = 100).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

const BFD_100: &str = "min rx interval 100 ms; min tx interval 100 ms; multiplier 3;";

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool, ctx: impl Fn() -> String) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "{what}\n{}", ctx());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn routed(ns: &Netns, prefix: &str) -> bool {
    ns.ip(&["route", "show", prefix])
        .unwrap_or_default()
        .contains("via")
}

/// Seconds from freezing the peer until the detector's kernel dropped its route.
fn detection(kind: Kind) -> f64 {
    let d = Netns::new("twbfdd").unwrap();
    let h = Netns::new("twbfdh").unwrap();
    d.veth(&["192.0.2.1/24"], &h, &["192.0.2.2/24"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (peer, psock) = bird(
        &h,
        dir.path(),
        "peer",
        &format!(
            "router id 192.0.2.2;\nprotocol device {{}}\n\
             protocol static {{ ipv4; route 10.244.2.0/26 blackhole; }}\n\
             protocol bfd {{ interface \"*\" {{ {BFD_100} }}; }}\n\
             protocol bgp det {{ local 192.0.2.2 as 65002; neighbor 192.0.2.1 as 65001; \
             hold time 90; connect retry time 1; bfd on; \
             ipv4 {{ import none; export where source = RTS_STATIC; }}; }}\n"
        ),
    );
    let _det = match kind {
        Kind::Bird => {
            bird(
                &d,
                dir.path(),
                "detector",
                &format!(
                    "router id 192.0.2.1;\nprotocol device {{}}\n\
                     protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n\
                     protocol bfd {{ interface \"*\" {{ {BFD_100} }}; }}\n\
                     protocol bgp peer {{ local 192.0.2.1 as 65001; neighbor 192.0.2.2 as 65002; \
                     hold time 90; connect retry time 1; bfd on; \
                     ipv4 {{ import all; export none; }}; }}\n"
                ),
            )
            .0
        }
        Kind::Twill => twill(
            &d,
            dir.path(),
            "asn: 65001\nrouter_id: 192.0.2.1\nlisten: { address: 0.0.0.0, port: 179 }\n\
             kernel: { install: true }\npeers:\n\
             - { address: 192.0.2.2, asn: 65002, hold_time: 90, connect_retry: 1, \
             families: [ipv4-unicast], bfd: { receive_interval_ms: 100, \
             transmit_interval_ms: 100, detect_multiplier: 3 } }\n",
        ),
    };
    wait(
        "route and BFD up",
        Duration::from_secs(60),
        || {
            routed(&d, "10.244.2.0/26")
                && birdc(&psock, &["show", "bfd", "sessions"])
                    .lines()
                    .any(|l| l.contains("192.0.2.1") && l.contains("Up") && l.contains("0.100"))
        },
        || birdc(&psock, &["show", "bfd", "sessions"]),
    );
    // Let both sides settle at 100 ms (the Poll after slow start) before the failure.
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    kill(Pid::from_raw(peer.pid() as i32), Signal::SIGSTOP).unwrap();
    while routed(&d, "10.244.2.0/26") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{kind:?}: never withdrawn"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    kill(Pid::from_raw(peer.pid() as i32), Signal::SIGKILL).unwrap();
    secs
}

/// Seconds from freezing the node (twill-bgpd or BIRD) until the BIRD ToR's kernel
/// dropped the node's route.
fn tor_detection(node: Kind) -> f64 {
    let d = Netns::new("twbfdt").unwrap();
    let h = Netns::new("twbfdn").unwrap();
    d.veth(&["192.0.2.1/24"], &h, &["192.0.2.2/24"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_tor, tsock) = bird(
        &d,
        dir.path(),
        "tor",
        &format!(
            "router id 192.0.2.1;\nprotocol device {{}}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; }}\n\
             protocol bfd {{ interface \"*\" {{ {BFD_100} }}; }}\n\
             protocol bgp node {{ local 192.0.2.1 as 65001; neighbor 192.0.2.2 as 65002; \
             hold time 90; connect retry time 1; bfd on; \
             ipv4 {{ import all; export none; }}; }}\n"
        ),
    );
    let node_pid = match node {
        Kind::Bird => {
            let (g, _) = bird(
                &h,
                dir.path(),
                "node",
                &format!(
                    "router id 192.0.2.2;\nprotocol device {{}}\n\
                     protocol static {{ ipv4; route 10.244.2.0/26 blackhole; }}\n\
                     protocol bfd {{ interface \"*\" {{ {BFD_100} }}; }}\n\
                     protocol bgp tor {{ local 192.0.2.2 as 65002; neighbor 192.0.2.1 as 65001; \
                     hold time 90; connect retry time 1; bfd on; \
                     ipv4 {{ import none; export where source = RTS_STATIC; }}; }}\n"
                ),
            );
            g
        }
        Kind::Twill => twill(
            &h,
            dir.path(),
            "asn: 65002\nrouter_id: 192.0.2.2\nlisten: { address: 0.0.0.0, port: 179 }\n\
             originate: [10.244.2.0/26]\npeers:\n\
             - { address: 192.0.2.1, asn: 65001, hold_time: 90, connect_retry: 1, \
             families: [ipv4-unicast], bfd: { receive_interval_ms: 100, \
             transmit_interval_ms: 100, detect_multiplier: 3 } }\n",
        ),
    };
    wait(
        "route and BFD up at the ToR",
        Duration::from_secs(60),
        || {
            routed(&d, "10.244.2.0/26")
                && birdc(&tsock, &["show", "bfd", "sessions"])
                    .lines()
                    .any(|l| l.contains("192.0.2.2") && l.contains("Up") && l.contains("0.100"))
        },
        || birdc(&tsock, &["show", "bfd", "sessions"]),
    );
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    kill(Pid::from_raw(node_pid.pid() as i32), Signal::SIGSTOP).unwrap();
    while routed(&d, "10.244.2.0/26") {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{node:?}: never withdrawn at the ToR"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = t0.elapsed().as_secs_f64();
    kill(Pid::from_raw(node_pid.pid() as i32), Signal::SIGKILL).unwrap();
    secs
}

const SESSIONS: u32 = 100;

/// CPU seconds the speaker used over `window` with 100 BFD sessions Up.
fn cpu(kind: Kind, window: Duration) -> f64 {
    let s = Netns::new("twbfds").unwrap();
    let p = Netns::new("twbfdp").unwrap();
    let mine: Vec<String> = (0..SESSIONS)
        .map(|i| format!("198.51.100.{}/24", i + 1))
        .collect();
    let theirs: Vec<String> = (0..SESSIONS)
        .map(|i| format!("198.51.100.{}/24", i + 128))
        .collect();
    let mine_ref: Vec<&str> = mine.iter().map(String::as_str).collect();
    let theirs_ref: Vec<&str> = theirs.iter().map(String::as_str).collect();
    s.veth(&mine_ref, &p, &theirs_ref).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ip = |v: &String| v.trim_end_matches("/24").to_owned();
    // The far ends: one BIRD, one static session per pair.
    let mut far = format!(
        "router id 198.51.100.128;\nprotocol device {{}}\nprotocol bfd {{\n  interface \"*\" {{ {BFD_100} }};\n"
    );
    for (m, t) in mine.iter().zip(&theirs) {
        far += &format!("  neighbor {} local {};\n", ip(m), ip(t));
    }
    far += "}\n";
    let (_far, fsock) = bird(&p, dir.path(), "far", &far);
    let speaker = match kind {
        Kind::Bird => {
            let mut conf = format!(
                "router id 198.51.100.1;\nprotocol device {{}}\nprotocol bfd {{\n  interface \"*\" {{ {BFD_100} }};\n"
            );
            for (m, t) in mine.iter().zip(&theirs) {
                conf += &format!("  neighbor {} local {};\n", ip(t), ip(m));
            }
            conf += "}\n";
            bird(&s, dir.path(), "speaker", &conf).0
        }
        Kind::Twill => {
            let mut yaml = String::from(
                "asn: 65001\nrouter_id: 198.51.100.1\nlisten: { address: 0.0.0.0, port: 0 }\npeers:\n",
            );
            for (m, t) in mine.iter().zip(&theirs) {
                yaml += &format!(
                    "- {{ address: {}, asn: 65002, passive: true, source_address: {}, \
                     families: [ipv4-unicast], bfd: {{ receive_interval_ms: 100, \
                     transmit_interval_ms: 100, detect_multiplier: 3 }} }}\n",
                    ip(t),
                    ip(m)
                );
            }
            twill(&s, dir.path(), &yaml)
        }
    };
    let up = || {
        birdc(&fsock, &["show", "bfd", "sessions"])
            .lines()
            .filter(|l| l.contains(" Up ") && l.contains("0.100"))
            .count()
    };
    wait(
        "100 sessions Up at 100 ms",
        Duration::from_secs(120),
        || up() == SESSIONS as usize,
        || format!("{} up", up()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let c0 = cpu_secs(speaker.pid());
    std::thread::sleep(window);
    let used = cpu_secs(speaker.pid()) - c0;
    assert_eq!(up(), SESSIONS as usize, "{kind:?}: sessions flapped");
    used
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let runs = arg("--runs", 5);
    let window = Duration::from_secs(arg("--window", 20));
    let kinds = [Kind::Twill, Kind::Bird];
    let mut det: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for r in 0..runs {
        // Alternate who goes first.
        for i in 0..2 {
            let k = (i + r as usize) % 2;
            det[k].push(detection(kinds[k]));
        }
    }
    println!("## Detection to kernel withdrawal, 100 ms × 3 (runs: {runs})\n");
    println!("| detector | median ms | min ms | max ms | all ms | ratio to BIRD (median) |");
    println!("|---|---|---|---|---|---|");
    let bird_med = median(&det[1]);
    for (k, v) in kinds.iter().zip(&det) {
        let all: Vec<String> = v.iter().map(|s| format!("{:.0}", s * 1000.0)).collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.2} |",
            k.label(),
            median(v) * 1000.0,
            v.iter().copied().fold(f64::MAX, f64::min) * 1000.0,
            v.iter().copied().fold(0.0, f64::max) * 1000.0,
            all.join(", "),
            median(v) / bird_med
        );
    }
    let tor_runs = arg("--tor-runs", runs);
    let mut tor: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for r in 0..tor_runs {
        for i in 0..2 {
            let k = (i + r as usize) % 2;
            tor[k].push(tor_detection(kinds[k]));
        }
    }
    println!(
        "\n## A frozen node seen by a BIRD ToR, 100 ms × 3, to the ToR's kernel (runs: {tor_runs})\n"
    );
    println!("| frozen node | median ms | min ms | max ms | all ms | ratio to BIRD (median) |");
    println!("|---|---|---|---|---|---|");
    let bird_tor = median(&tor[1]);
    for (k, v) in kinds.iter().zip(&tor) {
        let all: Vec<String> = v.iter().map(|s| format!("{:.0}", s * 1000.0)).collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {:.2} |",
            k.label(),
            median(v) * 1000.0,
            v.iter().copied().fold(f64::MAX, f64::min) * 1000.0,
            v.iter().copied().fold(0.0, f64::max) * 1000.0,
            all.join(", "),
            median(v) / bird_tor
        );
    }
    let cpu_runs = arg("--cpu-runs", 2);
    let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); 2];
    for r in 0..cpu_runs {
        for i in 0..2 {
            let k = (i + r as usize) % 2;
            cpus[k].push(cpu(kinds[k], window));
        }
    }
    println!(
        "\n## CPU of {SESSIONS} BFD sessions at 100 ms × 3, over {}s (runs: {cpu_runs})\n",
        window.as_secs()
    );
    println!("| speaker | median CPU s | % of one core | all | ratio to BIRD |");
    println!("|---|---|---|---|---|");
    let bird_cpu = median(&cpus[1]).max(0.01);
    for (k, v) in kinds.iter().zip(&cpus) {
        let all: Vec<String> = v.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "| {} | {:.2} | {:.1} | {} | {:.2} |",
            k.label(),
            median(v),
            median(v) / window.as_secs_f64() * 100.0,
            all.join(", "),
            median(v) / bird_cpu
        );
    }
}
