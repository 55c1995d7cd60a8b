//! Ingest benchmark (not run in CI): a BIRD sender announces N IPv4 prefixes to a receiver
//! in another namespace; we time from enabling the sender's session until the receiver
//! holds them all, in its kernel (`--mode kernel`: BIRD with a kernel protocol exporting
//! vs twill-bgpd with kernel install) or in its RIB (`--mode rib`: kernel off). Runs
//! alternate between receivers; medians and peak RSS (VmHWM) are printed as Markdown.
//!
//! ```text
//! cargo bench -p twill-bgpd --bench ingest -- --sizes 200000,1000000 --runs 3 --mode kernel
//! cargo bench -p twill-bgpd --bench ingest -- --sizes 1000000 --runs 3 --mode rib
//! ```
//! (or build it in debug with `TWILL_BGPD_BIN=target/release/twill-bgpd` pointing at a
//! release speaker: the bench process only orchestrates.)
//! Needs root (namespaces) and BIRD 2. Prefixes are /28s carved from 10.0.0.0/8 (the only
//! private IPv4 range big enough for 1M distinct prefixes), inside the bench's own namespaces.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Receiver {
    Bird,
    Twill,
}

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

fn birdc(sock: &std::path::Path, args: &[&str]) -> String {
    Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn bird(
    ns: &Netns,
    dir: &std::path::Path,
    name: &str,
    conf: &str,
) -> (ChildGuard, std::path::PathBuf) {
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

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn bird_route_count(sock: &std::path::Path, protocol: Option<&str>) -> u64 {
    // "1000001 of 1000001 routes for 1000001 networks in table master4"
    let mut args = vec!["show", "route", "count"];
    if let Some(p) = protocol {
        args.extend(["protocol", p]);
    }
    birdc(sock, &args)
        .lines()
        .find(|l| l.contains(" routes for "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn twill_accepted(api: &std::path::Path) -> Option<u64> {
    use hyper_util::rt::TokioIo;
    use tonic::transport::{Endpoint, Uri};
    let p = api.to_path_buf();
    let ch = Endpoint::from_static("http://twill.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move { tokio::net::UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .ok()?;
    let mut c = twill_proto::bgp::bgp_client::BgpClient::new(ch);
    let peers = c
        .list_peers(twill_proto::bgp::ListPeersRequest {})
        .await
        .ok()?
        .into_inner()
        .peers;
    peers.first().map(|p| p.prefixes_accepted)
}

/// One run: seconds from enabling the sender until the receiver holds `n`, and its VmHWM.
fn run(rx: Receiver, mode: Mode, n: u32, sender_conf: &str) -> (f64, u64) {
    let s_ns = Netns::new("twbs").unwrap();
    let r_ns = Netns::new("twbr").unwrap();
    r_ns.veth(&["192.0.2.1/24"], &s_ns, &["192.0.2.2/24"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_sender, ssock) = bird(&s_ns, dir.path(), "sender", sender_conf);
    // Wait until the sender has its statics (BIRD parses a big config for a while).
    let t = Instant::now();
    while bird_route_count(&ssock, None) < u64::from(n) {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "sender never loaded its routes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let base = main_prefixes(&r_ns);
    let api = dir.path().join("api.sock");
    let (mut guard, rsock) = match rx {
        Receiver::Bird => {
            let kernel = if mode == Mode::Kernel {
                "protocol kernel { ipv4 { import none; export all; }; merge paths on; }\n"
            } else {
                ""
            };
            let conf = format!(
                "router id 192.0.2.1;\nprotocol device {{}}\n{kernel}\
                 protocol bgp sender {{ local 192.0.2.1 as 65001; neighbor 192.0.2.2 as 65002; \
                 ipv4 {{ import all; export none; }}; }}\n"
            );
            let (g, s) = bird(&r_ns, dir.path(), "receiver", &conf);
            (g, Some(s))
        }
        Receiver::Twill => {
            let conf = dir.path().join("bgpd.yaml");
            std::fs::write(
                &conf,
                format!(
                    "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: 0.0.0.0, port: 179 }}\n\
                     kernel: {{ install: {} }}\n\
                     peers: [{{ address: 192.0.2.2, asn: 65002, passive: true }}]\n",
                    mode == Mode::Kernel
                ),
            )
            .unwrap();
            // TWILL_BGPD_BIN lets a debug-built bench drive a release-built speaker.
            let bin = std::env::var("TWILL_BGPD_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_twill-bgpd").to_owned());
            let mut cmd = r_ns.command(bin);
            cmd.arg("--config").arg(&conf).arg("--api-socket").arg(&api);
            cmd.env("RUST_LOG", "warn");
            (ChildGuard::spawn("twill-bgpd", cmd).unwrap(), None)
        }
    };
    std::thread::sleep(Duration::from_millis(500)); // receiver listening
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    let out = birdc(&ssock, &["enable", "twill"]);
    assert!(out.contains("enabled"), "enable: {out}");
    let mut last_poke = Instant::now();
    loop {
        let have = match (mode, rx) {
            (Mode::Kernel, _) => main_prefixes(&r_ns).saturating_sub(base),
            (Mode::Rib, Receiver::Bird) => {
                bird_route_count(rsock.as_ref().unwrap(), Some("sender"))
            }
            (Mode::Rib, Receiver::Twill) => rt.block_on(twill_accepted(&api)).unwrap_or(0),
        };
        if have >= u64::from(n) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "{rx:?} got {have} of {n}\n{}",
            guard.log_tail(20)
        );
        // BIRD as a sender can sit on the tail of its feed while idle: poke it.
        if last_poke.elapsed() > Duration::from_millis(500) {
            birdc(&ssock, &["show", "status"]);
            last_poke = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss = vm_hwm_kib(guard.pid());
    let _ = guard.stop();
    (secs, rss)
}

fn median(v: &mut [f64]) -> f64 {
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
    let mut report = String::new();
    writeln!(
        report,
        "| prefixes | receiver | runs (s) | median (s) | peak RSS (MiB) |"
    )
    .unwrap();
    writeln!(report, "|---:|---|---|---:|---:|").unwrap();
    for &n in &sizes {
        let mut statics = String::with_capacity(n as usize * 40);
        for i in 0..n {
            writeln!(statics, "  route {} blackhole;", prefix(i)).unwrap();
        }
        let sender_conf = format!(
            "router id 192.0.2.2;\nprotocol device {{}}\nprotocol static {{ ipv4;\n{statics}}}\n\
             protocol bgp twill {{ local 192.0.2.2 as 65002; neighbor 192.0.2.1 as 65001; disabled; \
             ipv4 {{ import none; export all; }}; }}\n"
        );
        let mut times = [Vec::new(), Vec::new()];
        let mut rss = [0u64, 0u64];
        for r in 0..runs {
            let order = if r % 2 == 0 {
                [Receiver::Bird, Receiver::Twill]
            } else {
                [Receiver::Twill, Receiver::Bird]
            };
            for rx in order {
                let (s, m) = run(rx, mode, n, &sender_conf);
                eprintln!(
                    "{n} {rx:?} {mode:?} run {r}: {s:.2} s, {:.0} MiB",
                    m as f64 / 1024.0
                );
                let i = rx as usize;
                times[i].push(s);
                rss[i] = rss[i].max(m);
            }
        }
        for rx in [Receiver::Bird, Receiver::Twill] {
            let i = rx as usize;
            let list: Vec<String> = times[i].iter().map(|t| format!("{t:.2}")).collect();
            let med = median(&mut times[i].clone());
            writeln!(
                report,
                "| {n} | {} | {} | {med:.2} | {:.0} |",
                match rx {
                    Receiver::Bird => "BIRD 2.0.12",
                    Receiver::Twill => "twill-bgpd",
                },
                list.join(", "),
                rss[i] as f64 / 1024.0
            )
            .unwrap();
        }
    }
    println!("mode: {mode:?}\n\n{report}");
}
