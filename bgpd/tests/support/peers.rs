//! Real peers: BIRD 2, FRR (zebra + bgpd as user `frr`) and GoBGP, each with a private
//! config/socket/pid directory so parallel tests never collide.

use std::path::PathBuf;
use std::process::Command;

use twill_harness::netns::Netns;
use twill_harness::process::ChildGuard;

/// A BIRD 2 daemon in a namespace.
pub struct Bird {
    pub guard: ChildGuard,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub conf: PathBuf,
}

impl Bird {
    pub fn start(ns: &Netns, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("twill-bird-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("bird.conf");
        let sock = dir.path().join("bird.ctl");
        std::fs::write(&conf, config).unwrap();
        let guard = ChildGuard::spawn_in(
            ns,
            "bird",
            "bird",
            &[
                "-f",
                "-c",
                conf.to_str().unwrap(),
                "-s",
                sock.to_str().unwrap(),
                "-P",
                dir.path().join("bird.pid").to_str().unwrap(),
            ],
        )
        .unwrap();
        Self {
            guard,
            dir,
            sock,
            conf,
        }
    }

    /// `birdc` output (empty on failure, e.g. while BIRD starts).
    pub fn birdc(&self, args: &[&str]) -> String {
        Command::new("birdc")
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn established(&self, proto: &str) -> bool {
        self.birdc(&["show", "protocols", proto])
            .contains("Established")
    }

    /// Rewrites the configuration and asks BIRD to reload it.
    pub fn reconfigure(&self, config: &str) {
        std::fs::write(&self.conf, config).unwrap();
        let out = self.birdc(&["configure"]);
        assert!(out.contains("Reconfigur"), "birdc configure: {out}");
    }

    pub fn context(&self) -> String {
        format!(
            "bird log:\n{}\nprotocols:\n{}",
            self.guard.log_tail(30),
            self.birdc(&["show", "protocols", "all"])
        )
    }
}

impl Bird {
    /// "received" of the channel's "Import updates" (how many updates BIRD got from us).
    pub fn import_updates_received(&self, proto: &str) -> u64 {
        let out = self.birdc(&["show", "protocols", "all", proto]);
        out.lines()
            .find(|l| l.trim_start().starts_with("Import updates:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// A minimal BIRD eBGP/iBGP config: kernel export, one static protocol per entry of
/// `statics` (named s1, s2, ...), one BGP protocol `twill`; `extra` goes inside the BGP
/// protocol block.
pub fn bird_conf(
    router_id: &str,
    local: &str,
    local_as: u32,
    neighbor: &str,
    neighbor_as: u32,
    statics: &[&str],
    extra: &str,
) -> String {
    let v6 = local.contains(':');
    let fam = if v6 { "ipv6" } else { "ipv4" };
    let mut s = format!(
        "router id {router_id};\nprotocol device {{}}\nprotocol kernel {{ {fam} {{ import none; export all; }}; }}\n"
    );
    for (i, r) in statics.iter().enumerate() {
        s += &format!(
            "protocol static s{} {{ {fam}; route {r} blackhole; }}\n",
            i + 1
        );
    }
    let (proto_extra, channel_extra) = extra.split_once("channel ").unwrap_or((extra, ""));
    s += &format!(
        "protocol bgp twill {{\n  local {local} as {local_as};\n  neighbor {neighbor} as {neighbor_as};\n  hold time 9;\n  connect retry time 1;\n  {proto_extra}\n  {fam} {{ import all; export where source = RTS_STATIC; {channel_extra} }};\n}}\n"
    );
    s
}

/// FRR's zebra and bgpd (as user `frr`) in a namespace, with private sockets and pid files.
pub struct Frr {
    pub zebra: ChildGuard,
    pub bgpd: ChildGuard,
    /// FRR's BFD daemon, when started with `start_with_bfd`.
    pub bfdd: Option<ChildGuard>,
    pub dir: tempfile::TempDir,
}

impl Frr {
    pub fn start(ns: &Netns, bgpd_conf: &str) -> Self {
        Self::start_with_bfd(ns, bgpd_conf, None)
    }

    /// `start`, plus bfdd with this configuration (its control socket in the private dir).
    pub fn start_with_bfd(ns: &Netns, bgpd_conf: &str, bfdd_conf: Option<&str>) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("twill-frr-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // The daemons drop to `frr`: they must be able to write here.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(d.join("zebra.conf"), "hostname zebra\n").unwrap();
        std::fs::write(d.join("bgpd.conf"), bgpd_conf).unwrap();
        std::fs::write(d.join("bfdd.conf"), bfdd_conf.unwrap_or("")).unwrap();
        for f in ["zebra.conf", "bgpd.conf", "bfdd.conf"] {
            std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let common = |name: &str| {
            vec![
                "-f".to_owned(),
                p(&format!("{name}.conf")),
                "-i".to_owned(),
                p(&format!("{name}.pid")),
                "-z".to_owned(),
                p("zserv.api"),
                "--vty_socket".to_owned(),
                d.to_str().unwrap().to_owned(),
                "-u".to_owned(),
                "frr".to_owned(),
                "-g".to_owned(),
                "frr".to_owned(),
                "-A".to_owned(),
                "127.0.0.1".to_owned(),
                "-P".to_owned(),
                "0".to_owned(),
                "--log".to_owned(),
                "stdout".to_owned(),
            ]
        };
        let zargs = common("zebra");
        let zargs: Vec<&str> = zargs.iter().map(String::as_str).collect();
        let zebra = ChildGuard::spawn_in(ns, "zebra", "/usr/lib/frr/zebra", &zargs).unwrap();
        // bgpd connects to zebra's socket; give zebra a moment to create it.
        let _ = twill_harness::wait::wait_until(
            "zebra socket",
            std::time::Duration::from_secs(20),
            std::time::Duration::from_millis(50),
            || d.join("zserv.api").exists(),
        );
        let bargs = common("bgpd");
        let bargs: Vec<&str> = bargs.iter().map(String::as_str).collect();
        let bgpd = ChildGuard::spawn_in(ns, "frr-bgpd", "/usr/lib/frr/bgpd", &bargs).unwrap();
        let bfdd = bfdd_conf.map(|_| {
            let mut args = common("bfdd");
            args.push("--bfdctl".to_owned());
            args.push(p("bfdd.sock"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ChildGuard::spawn_in(ns, "frr-bfdd", "/usr/lib/frr/bfdd", &args).unwrap()
        });
        Self {
            zebra,
            bgpd,
            bfdd,
            dir,
        }
    }

    pub fn vtysh(&self, cmd: &str) -> String {
        Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir.path())
            .arg("-c")
            .arg(cmd)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    pub fn established(&self, neighbor: &str) -> bool {
        self.vtysh(&format!("show bgp neighbors {neighbor}"))
            .contains("BGP state = Established")
    }

    pub fn context(&self) -> String {
        format!(
            "zebra log:\n{}\nbgpd log:\n{}\nsummary:\n{}",
            self.zebra.log_tail(15),
            self.bgpd.log_tail(30),
            self.vtysh("show bgp summary")
        )
    }
}

/// GoBGP in a namespace; its API listens on 127.0.0.1:50051 inside that namespace only.
pub struct Gobgp {
    pub guard: ChildGuard,
    pub dir: tempfile::TempDir,
}

impl Gobgp {
    pub fn start(ns: &Netns, toml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("twill-gobgp-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("gobgpd.toml");
        std::fs::write(&conf, toml).unwrap();
        let guard = ChildGuard::spawn_in(
            ns,
            "gobgpd",
            "gobgpd",
            &[
                "-f",
                conf.to_str().unwrap(),
                "--api-hosts",
                "127.0.0.1:50051",
                "--pprof-disable",
                "-p",
            ],
        )
        .unwrap();
        Self { guard, dir }
    }

    /// Runs the `gobgp` CLI inside the namespace (empty output on failure).
    pub fn cli(ns: &Netns, args: &[&str]) -> String {
        ns.exec("gobgp", args).unwrap_or_default()
    }
}

/// ExaBGP in a namespace: connects out to its neighbors (never listens), logs to stdout.
pub struct Exabgp {
    pub guard: ChildGuard,
    pub dir: tempfile::TempDir,
}

impl Exabgp {
    pub fn start(ns: &Netns, config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("twill-exabgp-")
            .tempdir()
            .unwrap();
        let conf = dir.path().join("exabgp.conf");
        std::fs::write(&conf, config).unwrap();
        let mut cmd = ns.command("exabgp");
        cmd.arg(&conf)
            .env("exabgp_daemon_user", "root")
            .env("exabgp_daemon_drop", "false")
            .env("exabgp_daemon_daemonize", "false")
            .env("exabgp_tcp_bind", "")
            .env("exabgp_log_destination", "stdout")
            .env("exabgp_api_cli", "false")
            .env("exabgp_cache_attributes", "false");
        let guard = ChildGuard::spawn("exabgp", cmd).unwrap();
        Self { guard, dir }
    }
}
