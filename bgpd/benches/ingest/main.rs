//! Ingest benchmark (a bench binary, not run by `cargo test` or CI): a BIRD sender
//! announces N IPv4 prefixes to a receiver in another namespace; we time from the session
//! reaching Established (seen at the sender) until the receiver holds them all:
//! - `--mode kernel`: in its **kernel** (`/proc/net/fib_triestat` of its namespace), for
//!   BIRD (kernel protocol exporting) and twill-bgpd (kernel install);
//! - `--mode rib`: in its RIB (kernel install off), for BIRD, twill-bgpd, FRR (bgpd
//!   without zebra) and GoBGP, read from cheap counters (BIRD's "Routes: N imported",
//!   twill's ListPeers, FRR's `pfxRcd`, GoBGP's "Accepted"; polled every 20 ms, FRR every
//!   100 ms, GoBGP every second since its count walks its table).
//!
//! Every run gets fresh namespaces and processes; the receivers alternate (the order
//! rotates every run); medians, each receiver's CPU time from Established on and its
//! peak RSS (VmHWM) are printed as Markdown, with ratios to BIRD. Results and method:
//! `bench-results/bgpd.md`.
//!
//! ```text
//! cargo bench -p twill-bgpd --bench ingest -- --mode kernel --sizes 200000,1000000 --runs 3
//! cargo bench -p twill-bgpd --bench ingest -- --mode rib --sizes 1000000 --runs 3
//! # --receivers bird,twill,frr,gobgp to choose (default: kernel bird,twill; rib all four)
//! ```
//! Needs root (namespaces), BIRD 2, FRR and GoBGP. Prefixes are /28s carved from
//! 10.0.0.0/8 (the only private IPv4 range big enough for 1M distinct prefixes), inside
//! the bench's own namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod receivers;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use receivers::{Kind, Receiver, bird, birdc};
use twill_harness::netns::Netns;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Kernel,
    Rib,
}

fn prefix(i: u32) -> String {
    let a = 0x0A00_0000u32 + i * 16;
    format!(
        "{}.{}.{}.{}/28",
        a >> 24,
        (a >> 16) & 0xff,
        (a >> 8) & 0xff,
        a & 0xff
    )
}

fn main_prefixes(ns: &Netns) -> u64 {
    let s = ns
        .exec("cat", &["/proc/net/fib_triestat"])
        .unwrap_or_default();
    s.split("Local:")
        .next()
        .and_then(|main| {
            main.lines()
                .find(|l| l.trim_start().starts_with("Prefixes:"))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn sender_routes(sock: &std::path::Path) -> u64 {
    // "1000001 of 1000001 routes for 1000001 networks in table master4"
    birdc(sock, &["show", "route", "count"])
        .lines()
        .find(|l| l.contains(" routes for "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// One run's outcome.
struct Outcome {
    /// Seconds from Established (at the sender) until the receiver held all prefixes.
    secs: f64,
    /// Seconds from enabling the sender's session until Established.
    setup: f64,
    /// CPU seconds (user + system, all threads) the receiver used from Established on.
    cpu: f64,
    rss_kib: u64,
}

fn run(kind: Kind, mode: Mode, n: u32, sender_conf: &str) -> Outcome {
    let s_ns = Netns::new("twbs").unwrap();
    let r_ns = Netns::new("twbr").unwrap();
    r_ns.veth(&["192.0.2.1/24"], &s_ns, &["192.0.2.2/24"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_sender, ssock) = bird(&s_ns, dir.path(), "sender", sender_conf);
    // Wait until the sender has its statics (BIRD parses a big config for a while).
    let t = Instant::now();
    while sender_routes(&ssock) < u64::from(n) {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "sender never loaded its routes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let base = main_prefixes(&r_ns);
    let mut rx = Receiver::start(kind, &r_ns, dir.path(), mode == Mode::Kernel);
    std::thread::sleep(Duration::from_millis(1000)); // receiver listening
    let t0 = Instant::now();
    let out = birdc(&ssock, &["enable", "twill"]);
    assert!(out.contains("enabled"), "enable: {out}");
    while !birdc(&ssock, &["show", "protocols", "twill"]).contains("Established") {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{kind:?}: no session\n{}",
            rx.guard.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let t_est = Instant::now();
    let cpu0 = rx.cpu_secs();
    let _poker = Poker::start(&ssock);
    loop {
        let have = match mode {
            Mode::Kernel => main_prefixes(&r_ns).saturating_sub(base),
            Mode::Rib => rx.rib_count(),
        };
        if have >= u64::from(n) {
            break;
        }
        assert!(
            t_est.elapsed() < Duration::from_secs(900),
            "{kind:?} got {have} of {n}\n{}",
            rx.guard.log_tail(20)
        );
        std::thread::sleep(match mode {
            Mode::Kernel => Duration::from_millis(20),
            Mode::Rib => rx.poll_interval(),
        });
    }
    let secs = t_est.elapsed().as_secs_f64();
    let cpu = rx.cpu_secs() - cpu0;
    let rss_kib = rx.peak_rss_kib();
    let _ = rx.guard.stop();
    Outcome {
        secs,
        setup: (t_est - t0).as_secs_f64(),
        cpu,
        rss_kib,
    }
}

/// BIRD as a sender can sit on the tail of its feed while idle (up to seconds): a
/// command on its control socket every 10 ms wakes its event loop, so the feed's end is
/// not quantised by BIRD's idle timeout. One persistent connection, not a `birdc` per poke.
struct Poker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poker {
    fn start(sock: &std::path::Path) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut conn = std::os::unix::net::UnixStream::connect(sock).unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                if conn.write_all(b"show status\n").is_err() {
                    return;
                }
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Poker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` / `cargo bench -- --list`: nothing to run
    }
    let sizes: Vec<u32> = get("--sizes")
        .unwrap_or_else(|| "200000".to_owned())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    let runs: usize = get("--runs").map_or(3, |r| r.parse().unwrap());
    let mode = match get("--mode").as_deref() {
        Some("rib") => Mode::Rib,
        _ => Mode::Kernel,
    };
    let kinds: Vec<Kind> = get("--receivers")
        .unwrap_or_else(|| match mode {
            Mode::Kernel => "bird,twill".to_owned(),
            Mode::Rib => "bird,twill,frr,gobgp".to_owned(),
        })
        .split(',')
        .map(Kind::parse)
        .collect();
    let mut report = String::new();
    writeln!(
        report,
        "| prefixes | receiver | runs from Established (s) | median (s) | time / BIRD | median CPU (s) | peak RSS (MiB) | RSS / BIRD |"
    )
    .unwrap();
    writeln!(report, "|---:|---|---|---:|---:|---:|---:|---:|").unwrap();
    for &n in &sizes {
        let mut statics = String::with_capacity(n as usize * 40);
        for i in 0..n {
            writeln!(statics, "  route {} blackhole;", prefix(i)).unwrap();
        }
        let sender_conf = format!(
            "router id 192.0.2.2;\nprotocol device {{}}\nprotocol static {{ ipv4;\n{statics}}}\n\
             protocol bgp twill {{ local 192.0.2.2 as 65002; neighbor 192.0.2.1 as 65001; disabled; \
             connect delay time 1; ipv4 {{ import none; export all; }}; }}\n"
        );
        let mut times = vec![Vec::new(); kinds.len()];
        let mut cpus = vec![Vec::new(); kinds.len()];
        let mut rss = vec![0u64; kinds.len()];
        for r in 0..runs {
            // Rotate the order every run, so no receiver always runs first or last.
            for k in 0..kinds.len() {
                let i = (k + r) % kinds.len();
                let o = run(kinds[i], mode, n, &sender_conf);
                eprintln!(
                    "{n} {:?} {mode:?} run {r}: {:.2} s (session setup {:.2} s), CPU {:.2} s, {:.0} MiB",
                    kinds[i],
                    o.secs,
                    o.setup,
                    o.cpu,
                    o.rss_kib as f64 / 1024.0
                );
                times[i].push(o.secs);
                cpus[i].push(o.cpu);
                rss[i] = rss[i].max(o.rss_kib);
            }
        }
        let bird_i = kinds.iter().position(|k| *k == Kind::Bird);
        let bird_med = bird_i.map(|i| median(&times[i]));
        let bird_rss = bird_i.map(|i| rss[i] as f64);
        for (i, kind) in kinds.iter().enumerate() {
            let list: Vec<String> = times[i].iter().map(|t| format!("{t:.2}")).collect();
            let med = median(&times[i]);
            let mib = rss[i] as f64 / 1024.0;
            writeln!(
                report,
                "| {n} | {} | {} | {med:.2} | {} | {:.2} | {mib:.0} | {} |",
                kind.label(),
                list.join(", "),
                bird_med.map_or("-".to_owned(), |b| format!("{:.2}", med / b)),
                median(&cpus[i]),
                bird_rss.map_or("-".to_owned(), |b| format!("{:.2}", rss[i] as f64 / b)),
            )
            .unwrap();
        }
    }
    println!("mode: {mode:?}, {runs} runs\n\n{report}");
}
