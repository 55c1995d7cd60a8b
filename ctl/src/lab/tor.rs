//! The lab's top-of-rack router: BIRD 2 or FRR from Debian, in the ToR namespace, peering
//! eBGP with every node and installing what it learns in its kernel (so the ToR can reach
//! every pod, as a real rack switch would). Graceful restart is on, as operators run it
//! with Calico: a restarting felix does not make the ToR drop the node's routes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::LabError;
use super::state::Proc;
use super::sys;

/// Which router.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TorKind {
    #[default]
    Bird,
    Frr,
    None,
}

impl TorKind {
    pub fn name(self) -> &'static str {
        match self {
            TorKind::Bird => "bird",
            TorKind::Frr => "frr",
            TorKind::None => "none",
        }
    }
}

/// One BGP neighbour of the ToR.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub name: String,
    pub address: String,
    pub asn: u32,
}

/// BIRD's configuration.
pub fn bird_conf(router_id: &str, asn: u32, neighbors: &[Neighbor]) -> String {
    let mut s = format!(
        "router id {router_id};\n\
         protocol device {{ scan time 10; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
         template bgp node {{\n  local {router_id} as {asn};\n  connect retry time 1;\n  \
         graceful restart on;\n  ipv4 {{ import all; export all; }};\n}}\n"
    );
    for n in neighbors {
        s += &format!(
            "protocol bgp {} from node {{ neighbor {} as {}; }}\n",
            n.name, n.address, n.asn
        );
    }
    s
}

/// FRR's bgpd configuration.
pub fn frr_conf(router_id: &str, asn: u32, neighbors: &[Neighbor]) -> String {
    let mut s = format!(
        "hostname tor\n!\nrouter bgp {asn}\n bgp router-id {router_id}\n \
         no bgp ebgp-requires-policy\n no bgp network import-check\n bgp graceful-restart\n"
    );
    for n in neighbors {
        s += &format!(
            " neighbor {a} remote-as {asn}\n neighbor {a} timers connect 1\n",
            a = n.address,
            asn = n.asn
        );
    }
    s += " address-family ipv4 unicast\n";
    for n in neighbors {
        s += &format!("  neighbor {} activate\n", n.address);
    }
    s += " exit-address-family\n!\n";
    s
}

/// Starts the router in `ns`, its files in `dir`.
pub fn start(
    kind: TorKind,
    ns: &str,
    dir: &Path,
    router_id: &str,
    asn: u32,
    neighbors: &[Neighbor],
) -> Result<Vec<Proc>, LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    match kind {
        TorKind::None => Ok(Vec::new()),
        TorKind::Bird => {
            let conf = dir.join("bird.conf");
            std::fs::write(&conf, bird_conf(router_id, asn, neighbors))
                .map_err(|e| LabError::io(&conf, e))?;
            let proc = sys::spawn(
                Some(ns),
                "bird",
                Path::new("/usr/sbin/bird"),
                &[
                    "-f".into(),
                    "-c".into(),
                    p("bird.conf"),
                    "-s".into(),
                    p("bird.ctl"),
                    "-P".into(),
                    p("bird.pidfile"),
                ],
                &[],
                &dir.join("bird.log"),
            )?;
            Ok(vec![proc])
        }
        TorKind::Frr => {
            // The daemons drop to user `frr` and must write here.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| LabError::io(dir, e))?;
            for (file, text) in [
                ("zebra.conf", "hostname tor\n".to_string()),
                ("bgpd.conf", frr_conf(router_id, asn, neighbors)),
            ] {
                let path = dir.join(file);
                std::fs::write(&path, text).map_err(|e| LabError::io(&path, e))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
                    .map_err(|e| LabError::io(&path, e))?;
            }
            let common = |name: &str| -> Vec<String> {
                [
                    "-f",
                    &p(&format!("{name}.conf")),
                    "-i",
                    &p(&format!("{name}.pidfile")),
                    "-z",
                    &p("zserv.api"),
                    "--vty_socket",
                    &dir.to_string_lossy(),
                    "-u",
                    "frr",
                    "-g",
                    "frr",
                    "-A",
                    "127.0.0.1",
                    "-P",
                    "0",
                    "--log",
                    "stdout",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect()
            };
            let zebra = sys::spawn(
                Some(ns),
                "zebra",
                Path::new("/usr/lib/frr/zebra"),
                &common("zebra"),
                &[],
                &dir.join("zebra.log"),
            )?;
            let zserv = dir.join("zserv.api");
            sys::wait_for("zebra's socket", std::time::Duration::from_secs(20), || {
                zserv.exists().then_some(())
            })?;
            let bgpd = sys::spawn(
                Some(ns),
                "frr-bgpd",
                Path::new("/usr/lib/frr/bgpd"),
                &common("bgpd"),
                &[],
                &dir.join("bgpd.log"),
            )?;
            Ok(vec![zebra, bgpd])
        }
    }
}

/// The router's view of its sessions, for the picture (`birdc`/`vtysh` output).
pub fn sessions(kind: TorKind, dir: &Path) -> String {
    let out = match kind {
        TorKind::Bird => sys::run(
            "birdc",
            &[
                "-s",
                &dir.join("bird.ctl").to_string_lossy(),
                "show",
                "protocols",
            ],
        ),
        TorKind::Frr => sys::run(
            "vtysh",
            &[
                "--vty_socket",
                &dir.to_string_lossy(),
                "-c",
                "show bgp summary",
            ],
        ),
        TorKind::None => Ok(String::new()),
    };
    out.unwrap_or_else(|e| format!("({e})\n"))
}

/// Parses a kind name stored in the state.
pub fn kind_of(name: &str) -> TorKind {
    match name {
        "bird" => TorKind::Bird,
        "frr" => TorKind::Frr,
        _ => TorKind::None,
    }
}
