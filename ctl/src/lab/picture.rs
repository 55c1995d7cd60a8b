//! The lab's picture: nodes with their blocks and sessions, the ToR's view, routes toward
//! pods on every host, the pods, and a pod-to-pod ping matrix — what an operator looks at
//! to see that the fabric carries plain IP.

use std::io::Write;
use std::path::Path;

use twill_api::resources::IPAMBlock;
use twill_proto::bgp as pb;

use super::state::{State, lab_dir};
use super::{Lab, LabError, POOL_CIDR, sys, tor};

/// (established, configured) sessions of the speaker behind `socket`.
pub async fn sessions_established(socket: &Path) -> Result<(usize, usize), String> {
    let peers = peers(socket).await?;
    let up = peers.iter().filter(|p| p.state == "Established").count();
    Ok((up, peers.len()))
}

async fn peers(socket: &Path) -> Result<Vec<pb::Peer>, String> {
    if !socket.exists() {
        return Err(format!("{} does not exist yet", socket.display()));
    }
    let mut client = crate::bgp::connect(socket)
        .await
        .map_err(|e| e.to_string())?;
    client
        .list_peers(pb::ListPeersRequest {})
        .await
        .map(|r| r.into_inner().peers)
        .map_err(|e| e.to_string())
}

/// Routes toward the pod pool in a namespace (`ip route show root 10.244.0.0/16`).
pub fn pod_routes(ns: &str) -> String {
    sys::ip_in(ns, &["route", "show", "root", POOL_CIDR]).unwrap_or_else(|e| format!("({e})\n"))
}

/// Whether `from` (a pod's namespace) gets an answer from `to` within a second.
pub fn ping(from_ns: &str, to: &str) -> bool {
    sys::exec_in(from_ns, "ping", &["-c", "1", "-W", "1", "-q", to]).is_ok()
}

/// The ping matrix: `result[i][j]` is whether pod i reached pod j's first address.
pub fn ping_matrix(st: &State) -> Vec<Vec<bool>> {
    let pods = &st.pods;
    std::thread::scope(|scope| {
        let rows: Vec<_> = pods
            .iter()
            .map(|from| {
                scope.spawn(move || {
                    pods.iter()
                        .map(|to| match to.ips.first() {
                            Some(ip) if from.name != to.name => ping(&from.netns, ip),
                            _ => true,
                        })
                        .collect::<Vec<bool>>()
                })
            })
            .collect();
        rows.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn w(e: std::io::Error) -> LabError {
    LabError::Command(format!("writing output: {e}"))
}

impl Lab {
    /// Prints the picture; with `ping`, the ping matrix too.
    pub async fn picture(&self, out: &mut dyn Write, ping: bool) -> Result<(), LabError> {
        let st = self.state()?;
        let ds = self.datastore().await?;
        let blocks = ds.list::<IPAMBlock>(None).await?.items;
        writeln!(
            out,
            "Twill lab {:?}: {} node(s), ToR {} (AS {}) at {}, etcd {} (from here: {})\n",
            st.name,
            st.nodes.len(),
            st.tor_kind,
            st.tor_asn,
            st.tor_address,
            st.etcd_url,
            st.etcd_local_url
        )
        .map_err(w)?;
        writeln!(
            out,
            "{:<8} {:<20} {:<12} {:<6} {:<6} {:<8} BLOCKS",
            "NODE", "NAMESPACE", "ADDRESS", "FELIX", "PODS", "BGP"
        )
        .map_err(w)?;
        for (i, n) in st.nodes.iter().enumerate() {
            let affinity = format!("host:{}", n.name);
            let mine: Vec<&str> = blocks
                .iter()
                .filter(|b| b.spec.affinity.as_deref() == Some(affinity.as_str()))
                .map(|b| b.spec.cidr.as_str())
                .collect();
            let felix = match &n.felix {
                Some(p) if sys::alive(p) => "up",
                _ => "down",
            };
            let bgp = match sessions_established(&n.socket).await {
                Ok((up, total)) => format!("{up}/{total}"),
                Err(_) => "-".into(),
            };
            let pods = st.pods.iter().filter(|p| p.node == i).count();
            writeln!(
                out,
                "{:<8} {:<20} {:<12} {:<6} {:<6} {:<8} {}",
                n.name,
                n.netns,
                n.address,
                felix,
                pods,
                bgp,
                mine.join(" ")
            )
            .map_err(w)?;
        }
        for n in &st.nodes {
            writeln!(out, "\nBGP sessions of {} (twillctl node status):", n.name).map_err(w)?;
            match peers(&n.socket).await {
                Ok(p) => out
                    .write_all(crate::bgp::render_peers(&p).as_bytes())
                    .map_err(w)?,
                Err(e) => writeln!(out, "  ({e})").map_err(w)?,
            }
        }
        let kind = tor::kind_of(&st.tor_kind);
        if kind != tor::TorKind::None {
            writeln!(out, "\nToR sessions ({}):", st.tor_kind).map_err(w)?;
            out.write_all(tor::sessions(kind, &lab_dir(&st.name).join("tor")).as_bytes())
                .map_err(w)?;
        }
        writeln!(out, "\nRoutes toward pods ({POOL_CIDR}):").map_err(w)?;
        for ns in st
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.netns.as_str()))
            .chain(std::iter::once(("tor", st.tor_netns.as_str())))
        {
            writeln!(out, "  {}:", ns.0).map_err(w)?;
            for line in pod_routes(ns.1).lines() {
                writeln!(out, "    {line}").map_err(w)?;
            }
        }
        writeln!(out, "\n{:<12} {:<12} {:<8} IPS", "POD", "NAMESPACE", "NODE").map_err(w)?;
        for p in &st.pods {
            writeln!(
                out,
                "{:<12} {:<12} {:<8} {}",
                p.name,
                p.namespace,
                st.nodes[p.node].name,
                p.ips.join(", ")
            )
            .map_err(w)?;
        }
        if ping && st.pods.len() > 1 {
            let m = ping_matrix(&st);
            let ok = m.iter().flatten().filter(|x| **x).count();
            writeln!(
                out,
                "\nPing matrix (row pings column; ok = reply within 1 s): {ok}/{} ok",
                m.len() * m.len()
            )
            .map_err(w)?;
            write!(out, "{:<12}", "").map_err(w)?;
            for p in &st.pods {
                write!(out, " {:>8}", p.name).map_err(w)?;
            }
            writeln!(out).map_err(w)?;
            for (i, row) in m.iter().enumerate() {
                write!(out, "{:<12}", st.pods[i].name).map_err(w)?;
                for (j, v) in row.iter().enumerate() {
                    let cell = if i == j {
                        "-"
                    } else if *v {
                        "ok"
                    } else {
                        "FAIL"
                    };
                    write!(out, " {cell:>8}").map_err(w)?;
                }
                writeln!(out).map_err(w)?;
            }
        }
        Ok(())
    }
}
