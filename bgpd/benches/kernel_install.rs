//! Kernel install benchmark: 100,000 IPv4 routes through `KernelSync` against `ip -batch` of
//! the same routes (the kernel's floor), alternated in the same run, medians reported.
//!
//! Each run gets a fresh network namespace with a veth uplink (192.0.2.1/24, next hop
//! 192.0.2.2). The prefixes are all inside 10.244.0.0/16: every /32, every /31 and the first
//! 1,696 /30s (100,000 distinct routes). Timed: install (submit to flush done / `ip -batch`
//! exit) and delete of all of them. Run as root:
//!
//! ```text
//! cargo bench -p twill-bgpd --bench kernel_install          # TWILL_BENCH_RUNS=5 by default
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use twill_bgpd::kernel::{KernelConfig, KernelRoute, KernelSync, RouteChange};
use twill_harness::netns::{Netns, NsRuntime};

const ROUTES: usize = 100_000;
const NEXT_HOP: &str = "192.0.2.2";

fn prefixes() -> Vec<Ipv4Net> {
    let base = u32::from(Ipv4Addr::new(10, 244, 0, 0));
    let mut out = Vec::with_capacity(ROUTES);
    for (len, step) in [(32u8, 1u32), (31, 2), (30, 4)] {
        let mut a = 0;
        while a < 65_536 && out.len() < ROUTES {
            out.push(Ipv4Net::new(Ipv4Addr::from(base + a), len).unwrap());
            a += step;
        }
    }
    assert_eq!(out.len(), ROUTES);
    out
}

fn node() -> Netns {
    let ns = Netns::new("tw-kbench").unwrap();
    ns.veth(&["192.0.2.1/24"], &ns, &[]).unwrap();
    ns
}

fn count_ours(ns: &Netns) -> usize {
    ns.ip(&["-4", "route", "show", "proto", "82"])
        .unwrap()
        .lines()
        .count()
}

/// Times `ip -n NS -batch -` fed `lines` on stdin (from spawn to exit).
fn ip_batch(ns: &Netns, lines: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    let took = start.elapsed();
    assert!(status.success());
    took
}

/// (install, delete) with `ip -batch`.
fn run_ip(prefixes: &[Ipv4Net]) -> (Duration, Duration) {
    let ns = node();
    let mut add = String::with_capacity(prefixes.len() * 64);
    let mut del = String::with_capacity(prefixes.len() * 48);
    for p in prefixes {
        add.push_str(&format!(
            "route replace {p} via {NEXT_HOP} proto 82 metric 20\n"
        ));
        del.push_str(&format!("route del {p} proto 82 metric 20\n"));
    }
    let install = ip_batch(&ns, &add);
    assert_eq!(count_ours(&ns), ROUTES);
    let delete = ip_batch(&ns, &del);
    assert_eq!(count_ours(&ns), 0);
    (install, delete)
}

/// (install, delete) through `KernelSync`.
fn run_twill(rt: &tokio::runtime::Runtime, prefixes: &[Ipv4Net]) -> (Duration, Duration) {
    let ns = node();
    let nsrt = NsRuntime::start(&ns).unwrap();
    let nh: std::net::IpAddr = NEXT_HOP.parse().unwrap();
    let adds: Vec<RouteChange> = prefixes
        .iter()
        .map(|p| RouteChange::Replace(KernelRoute::new(IpNet::V4(*p), vec![nh])))
        .collect();
    let dels: Vec<RouteChange> = prefixes
        .iter()
        .map(|p| RouteChange::Delete(IpNet::V4(*p)))
        .collect();
    let (install, delete) = rt.block_on(async {
        let (sync, existing) = nsrt
            .run(KernelSync::start(KernelConfig::default()))
            .await
            .unwrap()
            .unwrap();
        assert!(existing.is_empty());
        let start = Instant::now();
        sync.submit(adds);
        sync.flush().await.unwrap();
        let install = start.elapsed();
        assert_eq!(count_ours(&ns), ROUTES);
        let start = Instant::now();
        sync.submit(dels);
        sync.flush().await.unwrap();
        (install, start.elapsed())
    });
    assert_eq!(count_ours(&ns), 0);
    (install, delete)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let runs: usize = std::env::var("TWILL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefixes = prefixes();
    let (mut ip_add, mut ip_del, mut tw_add, mut tw_del) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let order: [bool; 2] = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for twill in order {
            if twill {
                let (a, d) = run_twill(&rt, &prefixes);
                println!(
                    "run {i}: KernelSync install {} ms, delete {} ms",
                    ms(a),
                    ms(d)
                );
                tw_add.push(a);
                tw_del.push(d);
            } else {
                let (a, d) = run_ip(&prefixes);
                println!(
                    "run {i}: ip -batch   install {} ms, delete {} ms",
                    ms(a),
                    ms(d)
                );
                ip_add.push(a);
                ip_del.push(d);
            }
        }
    }
    let (ia, id, ta, td) = (
        median(ip_add),
        median(ip_del),
        median(tw_add),
        median(tw_del),
    );
    let rate = |d: Duration| ROUTES as f64 / d.as_secs_f64();
    println!();
    println!("| {ROUTES} IPv4 routes, median of {runs} | install ms | routes/s | delete ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `ip -batch` | {} | {:.0} | {} |",
        ms(ia),
        rate(ia),
        ms(id)
    );
    println!("| KernelSync | {} | {:.0} | {} |", ms(ta), rate(ta), ms(td));
    println!(
        "| ratio KernelSync / ip -batch | {:.2} | | {:.2} |",
        ta.as_secs_f64() / ia.as_secs_f64(),
        td.as_secs_f64() / id.as_secs_f64()
    );
}
