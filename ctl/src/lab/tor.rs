//! The lab's top-of-rack router: BIRD 2 or FRR from Debian, in the ToR namespace, peering
//! eBGP with every node and installing what it learns in its kernel (so the ToR can reach
//! every pod, as a real rack switch would). Graceful restart is on, as operators run it
//! with Calico: a restarting felix does not make the ToR drop the node's routes.
//!
//! With BFD (`lab up --bfd`) the ToR runs BFD with every node at [`BFD_INTERVAL_MS`] ×
//! [`BFD_MULTIPLIER`] (BIRD's `protocol bfd`, FRR's bfdd with a profile): a node that
//! goes silent loses its routes in the ToR's kernel within about 300 ms. BIRD retries a
//! failed session after 1-10 s (`error wait time`), not its default 60-300 s, so a node
//! that comes back is routed again within seconds.

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

/// The lab's BFD timers (milliseconds), on the ToR and in Twill's `BFDProfile`.
pub const BFD_INTERVAL_MS: u32 = 100;
/// The lab's BFD detection multiplier.
pub const BFD_MULTIPLIER: u32 = 3;

/// BIRD's configuration (with `bfd`: BFD with every neighbor).
pub fn bird_conf(router_id: &str, asn: u32, neighbors: &[Neighbor], bfd: bool) -> String {
    let (bfd_protocol, bfd_on) = if bfd {
        (
            format!(
                "protocol bfd {{\n  interface \"*\" {{ min rx interval {BFD_INTERVAL_MS} ms; \
                 min tx interval {BFD_INTERVAL_MS} ms; multiplier {BFD_MULTIPLIER}; }};\n}}\n"
            ),
            "  bfd on;\n",
        )
    } else {
        (String::new(), "")
    };
    let mut s = format!(
        "router id {router_id};\n\
         protocol device {{ scan time 10; }}\n\
         protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
         {bfd_protocol}\
         template bgp node {{\n  local {router_id} as {asn};\n  connect retry time 1;\n  \
         graceful restart on;\n  error wait time 1, 10;\n{bfd_on}  ipv4 {{ import all; export all; }};\n}}\n"
    );
    for n in neighbors {
        s += &format!(
            "protocol bgp {} from node {{ neighbor {} as {}; }}\n",
            n.name, n.address, n.asn
        );
    }
    s
}

/// FRR's bfdd configuration: the lab's profile.
pub fn frr_bfdd_conf() -> String {
    format!(
        "bfd\n profile lab\n  receive-interval {BFD_INTERVAL_MS}\n  \
         transmit-interval {BFD_INTERVAL_MS}\n  detect-multiplier {BFD_MULTIPLIER}\n !\n!\n"
    )
}

/// FRR's bgpd configuration (with `bfd`: BFD with every neighbor, profile `lab`).
pub fn frr_conf(router_id: &str, asn: u32, neighbors: &[Neighbor], bfd: bool) -> String {
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
        if bfd {
            s += &format!(
                " neighbor {a} bfd\n neighbor {a} bfd profile lab\n",
                a = n.address
            );
        }
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
    bfd: bool,
) -> Result<Vec<Proc>, LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::io(dir, e))?;
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();
    match kind {
        TorKind::None => Ok(Vec::new()),
        TorKind::Bird => {
            let conf = dir.join("bird.conf");
            std::fs::write(&conf, bird_conf(router_id, asn, neighbors, bfd))
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
                ("bgpd.conf", frr_conf(router_id, asn, neighbors, bfd)),
                ("bfdd.conf", frr_bfdd_conf()),
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
            let mut procs = vec![zebra, bgpd];
            if bfd {
                let mut args = common("bfdd");
                args.extend(["--bfdctl".to_string(), p("bfdd.sock")]);
                procs.push(sys::spawn(
                    Some(ns),
                    "frr-bfdd",
                    Path::new("/usr/lib/frr/bfdd"),
                    &args,
                    &[],
                    &dir.join("bfdd.log"),
                )?);
            }
            Ok(procs)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn neighbors() -> Vec<Neighbor> {
        vec![Neighbor {
            name: "node1".into(),
            address: "192.0.2.11".into(),
            asn: 64512,
        }]
    }

    #[test]
    fn tor_configs_turn_bfd_on_only_when_asked() {
        let with = bird_conf("192.0.2.1", 65000, &neighbors(), true);
        assert!(with.contains("protocol bfd {"), "{with}");
        assert!(with.contains("min rx interval 100 ms"), "{with}");
        assert!(with.contains("multiplier 3"), "{with}");
        assert!(with.contains("  bfd on;"), "{with}");
        let without = bird_conf("192.0.2.1", 65000, &neighbors(), false);
        assert!(!without.contains("bfd"), "{without}");

        let frr = frr_conf("192.0.2.1", 65000, &neighbors(), true);
        assert!(
            frr.contains(" neighbor 192.0.2.11 bfd profile lab\n"),
            "{frr}"
        );
        assert!(!frr_conf("192.0.2.1", 65000, &neighbors(), false).contains("bfd"));
        let bfdd = frr_bfdd_conf();
        assert!(
            bfdd.contains("profile lab") && bfdd.contains("detect-multiplier 3"),
            "{bfdd}"
        );
    }
}
