//! The receivers of the ingest benchmark, each started fresh in its own namespace and
//! asked the same two questions: how many prefixes from the sender it holds (cheap
//! counters only, so polling does not slow it down), and its process's peak RSS.

use std::path::{Path, PathBuf};
use std::process::Command;

use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Bird,
    Twill,
    Frr,
    Gobgp,
}

impl Kind {
    pub fn parse(s: &str) -> Self {
        match s {
            "bird" => Kind::Bird,
            "twill" => Kind::Twill,
            "frr" => Kind::Frr,
            "gobgp" => Kind::Gobgp,
            other => panic!("unknown receiver {other:?} (bird, twill, frr, gobgp)"),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Bird => "BIRD 2.0.12",
            Kind::Twill => "twill-bgpd",
            Kind::Frr => "FRR 8.4.4 bgpd",
            Kind::Gobgp => "GoBGP 3.10.0",
        }
    }
}

pub fn birdc(sock: &Path, args: &[&str]) -> String {
    Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A BIRD in `ns` with `conf`; returns the guard and its control socket.
pub fn bird(ns: &Netns, dir: &Path, name: &str, conf: &str) -> (ChildGuard, PathBuf) {
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

/// "Routes: N imported, ..." of a BIRD protocol (an O(1) counter).
pub fn bird_imported(sock: &Path, proto: &str) -> u64 {
    birdc(sock, &["show", "protocols", "all", proto])
        .lines()
        .find(|l| l.trim_start().starts_with("Routes:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds a process (all its threads) has used so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces):
    // state is field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // USER_HZ (the unit of these fields) is 100 on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

pub fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A running receiver at 192.0.2.1 (AS 65001), passive towards the sender 192.0.2.2.
pub struct Receiver {
    pub kind: Kind,
    /// The process whose RSS counts (BIRD, twill-bgpd, FRR's bgpd, gobgpd).
    pub guard: ChildGuard,
    ns_name: String,
    dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(kind: Kind, ns: &Netns, dir: &Path, kernel: bool) -> Self {
        let guard = match kind {
            Kind::Bird => {
                let k = if kernel {
                    "protocol kernel { ipv4 { import none; export all; }; }\n"
                } else {
                    ""
                };
                let conf = format!(
                    "router id 192.0.2.1;\nprotocol device {{}}\n{k}\
                     protocol bgp sender {{ local 192.0.2.1 as 65001; neighbor 192.0.2.2 as 65002; \
                     passive on; ipv4 {{ import all; export none; }}; }}\n"
                );
                bird(ns, dir, "receiver", &conf).0
            }
            Kind::Twill => {
                let conf = dir.join("bgpd.yaml");
                std::fs::write(
                    &conf,
                    format!(
                        "asn: 65001\nrouter_id: 192.0.2.1\nlisten: {{ address: 0.0.0.0, port: 179 }}\n\
                         kernel: {{ install: {kernel} }}\n\
                         peers: [{{ address: 192.0.2.2, asn: 65002, passive: true, \
                         families: [ipv4-unicast] }}]\n"
                    ),
                )
                .unwrap();
                // TWILL_BGPD_BIN lets a debug-built bench drive a release-built speaker.
                let bin = std::env::var("TWILL_BGPD_BIN")
                    .unwrap_or_else(|_| env!("CARGO_BIN_EXE_twill-bgpd").to_owned());
                let mut cmd = ns.command(bin);
                cmd.arg("--config")
                    .arg(&conf)
                    .arg("--api-socket")
                    .arg(dir.join("api.sock"));
                cmd.env("RUST_LOG", "warn");
                ChildGuard::spawn("twill-bgpd", cmd).unwrap()
            }
            Kind::Frr => {
                assert!(!kernel, "FRR is measured RIB-only");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
                let conf = dir.join("bgpd.conf");
                std::fs::write(
                    &conf,
                    "hostname frr\nrouter bgp 65001\n bgp router-id 192.0.2.1\n \
                     no bgp ebgp-requires-policy\n neighbor 192.0.2.2 remote-as 65002\n \
                     neighbor 192.0.2.2 passive\n",
                )
                .unwrap();
                std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o666)).unwrap();
                let d = dir.to_str().unwrap();
                ChildGuard::spawn_in(
                    ns,
                    "frr-bgpd",
                    "/usr/lib/frr/bgpd",
                    &[
                        "-f",
                        conf.to_str().unwrap(),
                        "-i",
                        &format!("{d}/bgpd.pid"),
                        "--vty_socket",
                        d,
                        "-Z",
                        "-u",
                        "frr",
                        "-g",
                        "frr",
                        "-A",
                        "127.0.0.1",
                        "-P",
                        "0",
                        "-l",
                        "0.0.0.0",
                    ],
                )
                .unwrap()
            }
            Kind::Gobgp => {
                assert!(!kernel, "GoBGP is measured RIB-only");
                let conf = dir.join("gobgpd.toml");
                std::fs::write(
                    &conf,
                    "[global.config]\n  as = 65001\n  router-id = \"192.0.2.1\"\n  port = 179\n\
                     [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.2\"\n\
                     \x20   peer-as = 65002\n  [neighbors.transport.config]\n    passive-mode = true\n",
                )
                .unwrap();
                ChildGuard::spawn_in(
                    ns,
                    "gobgpd",
                    "gobgpd",
                    &[
                        "-f",
                        conf.to_str().unwrap(),
                        "--api-hosts",
                        "127.0.0.1:50051",
                        "--pprof-disable",
                        "-l",
                        "warn",
                    ],
                )
                .unwrap()
            }
        };
        Self {
            kind,
            guard,
            ns_name: ns.name().to_owned(),
            dir: dir.to_path_buf(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// Prefixes from the sender in the receiver's RIB (after import), from cheap counters.
    pub fn rib_count(&self) -> u64 {
        match self.kind {
            Kind::Bird => bird_imported(&self.dir.join("receiver.ctl"), "sender"),
            Kind::Twill => self
                .rt
                .block_on(twill_accepted(&self.dir.join("api.sock")))
                .unwrap_or(0),
            Kind::Frr => {
                let out = Command::new("vtysh")
                    .arg("--vty_socket")
                    .arg(&self.dir)
                    .args(["-c", "show bgp ipv4 unicast summary json"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                json_u64(&out, "\"pfxRcd\":")
            }
            Kind::Gobgp => {
                let out = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &self.ns_name,
                        "gobgp",
                        "neighbor",
                        "192.0.2.2",
                    ])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                // "    Received:          1000000" under "Route statistics:" (IPv4).
                out.lines()
                    .find(|l| l.trim_start().starts_with("Accepted:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            }
        }
    }

    /// How often to ask for `rib_count`. GoBGP counts accepted paths by walking its
    /// Adj-RIB-In in its main loop, so asking often would slow it down: once a second.
    pub fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(match self.kind {
            Kind::Bird | Kind::Twill => 20,
            Kind::Frr => 100,
            Kind::Gobgp => 1000,
        })
    }

    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.guard.pid())
    }

    pub fn peak_rss_kib(&self) -> u64 {
        vm_hwm_kib(self.guard.pid())
    }
}

fn json_u64(text: &str, key: &str) -> u64 {
    text.find(key)
        .map(|i| &text[i + key.len()..])
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn twill_accepted(api: &Path) -> Option<u64> {
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
