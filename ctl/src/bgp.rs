//! `twillctl bgp peers`, `twillctl bgp routes [--prefix CIDR]` and `twillctl node status`:
//! the BGP status of a speaker (felix's embedded one on the agent socket, or a standalone
//! `twill-bgpd` on its `--api-socket`), read over the `twill.bgp.v1.Bgp` gRPC service.
//!
//! `main` wires [`BgpCommand`] and [`NodeStatusArgs`] into the CLI and calls [`run_bgp`] /
//! [`run_node_status`]; the renderers are pure functions over the replies (tested here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use twill_proto::bgp as pb;
use twill_proto::bgp::bgp_client::BgpClient;

/// Where the speaker's control API listens.
#[derive(clap::Args, Debug, Clone)]
pub struct SocketArg {
    /// The agent (felix) or twill-bgpd API socket.
    #[arg(
        long,
        env = "TWILL_SOCKET",
        default_value = "/var/run/twill/agent.sock"
    )]
    pub socket: PathBuf,
}

/// Output format of the BGP commands.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BgpOutput {
    #[default]
    Table,
    Json,
}

/// Which RIB `bgp routes` lists.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RibTable {
    #[default]
    Loc,
    In,
    Out,
}

/// `twillctl bgp ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BgpCommand {
    /// The speaker's peers: state, uptime, prefixes received/accepted/advertised.
    Peers {
        #[command(flatten)]
        socket: SocketArg,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: BgpOutput,
    },
    /// Routes of the Loc-RIB (default) or of one peer's Adj-RIB-In/Out.
    Routes {
        #[command(flatten)]
        socket: SocketArg,
        /// Only prefixes equal to or inside this CIDR.
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        table: RibTable,
        /// The peer, with `--table in|out`.
        #[arg(long)]
        peer: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value_t)]
        output: BgpOutput,
    },
}

/// `twillctl node status`
#[derive(clap::Args, Debug, Clone)]
pub struct NodeStatusArgs {
    #[command(flatten)]
    pub socket: SocketArg,
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: BgpOutput,
}

#[derive(Debug, thiserror::Error)]
pub enum BgpCtlError {
    #[error("cannot reach the BGP API at {path}: {source}")]
    Connect {
        path: String,
        source: tonic::transport::Error,
    },
    #[error("BGP API: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    Usage(String),
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A client of the speaker's API over a unix socket.
pub async fn connect(path: &Path) -> Result<BgpClient<Channel>, BgpCtlError> {
    let p = path.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = Endpoint::from_static("http://twill.invalid")
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move { UnixStream::connect(p).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| BgpCtlError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    Ok(BgpClient::new(channel))
}

/// Runs a `twillctl bgp` subcommand, writing to `out`.
pub async fn run_bgp(cmd: BgpCommand, out: &mut impl Write) -> Result<(), BgpCtlError> {
    match cmd {
        BgpCommand::Peers { socket, output } => {
            let mut c = connect(&socket.socket).await?;
            let peers = c
                .list_peers(pb::ListPeersRequest {})
                .await?
                .into_inner()
                .peers;
            match output {
                BgpOutput::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&peers_json(&peers))?
                )?,
                BgpOutput::Table => out.write_all(render_peers(&peers).as_bytes())?,
            }
        }
        BgpCommand::Routes {
            socket,
            prefix,
            table,
            peer,
            output,
        } => {
            let table = match table {
                RibTable::Loc => pb::Table::LocRib,
                RibTable::In => pb::Table::AdjRibIn,
                RibTable::Out => pb::Table::AdjRibOut,
            };
            if table != pb::Table::LocRib && peer.is_none() {
                return Err(BgpCtlError::Usage("--table in|out needs --peer".to_owned()));
            }
            let mut c = connect(&socket.socket).await?;
            let routes = c
                .list_routes(pb::ListRoutesRequest {
                    table: table as i32,
                    peer: peer.unwrap_or_default(),
                    prefix: prefix.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .routes;
            match output {
                BgpOutput::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&routes_json(&routes))?
                )?,
                BgpOutput::Table => out.write_all(render_routes(&routes).as_bytes())?,
            }
        }
    }
    Ok(())
}

/// Runs `twillctl node status`, writing to `out`.
pub async fn run_node_status(
    args: NodeStatusArgs,
    out: &mut impl Write,
) -> Result<(), BgpCtlError> {
    let mut c = connect(&args.socket.socket).await?;
    let peers = c
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner()
        .peers;
    match args.output {
        BgpOutput::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&peers_json(&peers))?
        )?,
        BgpOutput::Table => {
            writeln!(out, "Twill BGP speaker is running.\n")?;
            for (title, v6) in [("IPv4 BGP status", false), ("IPv6 BGP status", true)] {
                let these: Vec<pb::Peer> = peers
                    .iter()
                    .filter(|p| p.address.contains(':') == v6)
                    .cloned()
                    .collect();
                writeln!(out, "{title}")?;
                if these.is_empty() {
                    writeln!(out, "No IPv{} peers found.\n", if v6 { 6 } else { 4 })?;
                } else {
                    out.write_all(render_peers(&these).as_bytes())?;
                    writeln!(out)?;
                }
            }
        }
    }
    Ok(())
}

fn peers_json(peers: &[pb::Peer]) -> serde_json::Value {
    serde_json::Value::Array(
        peers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "address": p.address, "asn": p.asn, "type": p.r#type, "state": p.state,
                    "sinceUnix": p.since_unix, "uptimeSeconds": p.uptime_seconds,
                    "routerId": p.router_id, "prefixesReceived": p.prefixes_received,
                    "prefixesAccepted": p.prefixes_accepted,
                    "prefixesAdvertised": p.prefixes_advertised, "lastError": p.last_error,
                    "bfd": p.bfd.as_ref().map(|b| serde_json::json!({
                        "state": b.state, "remoteState": b.remote_state,
                        "diagnostic": b.diagnostic, "txIntervalMs": b.tx_interval_ms,
                        "detectTimeMs": b.detect_time_ms, "holdingBgp": b.holding_bgp,
                    })),
                    "held": p.held,
                })
            })
            .collect(),
    )
}

fn routes_json(routes: &[pb::Route]) -> serde_json::Value {
    serde_json::Value::Array(
        routes
            .iter()
            .map(|r| {
                serde_json::json!({
                    "prefix": r.prefix, "fromPeer": r.from_peer, "nextHop": r.next_hop,
                    "best": r.best, "multipath": r.multipath, "stale": r.stale,
                    "asPath": r.as_path, "origin": r.origin, "med": r.med,
                    "localPref": r.local_pref, "communities": r.communities,
                    "largeCommunities": r.large_communities,
                })
            })
            .collect(),
    )
}

/// "1h02m03s" style durations, as BIRD and Calico operators read them.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h{m:02}m")
    } else if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A boxed ASCII table (calicoctl's look).
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let fmt_row = |cells: Vec<&str>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("| {c:<w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut s = line.clone();
    s += &fmt_row(headers.to_vec());
    s += &line;
    for r in rows {
        s += &fmt_row(r.iter().map(String::as_str).collect());
    }
    s += &line;
    s
}

/// The peer table of `bgp peers` and `node status`.
pub fn render_peers(peers: &[pb::Peer]) -> String {
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let info = if !p.held.is_empty() {
                format!("Held ({})", p.held)
            } else if p.state == "Established" || p.last_error.is_empty() {
                p.state.clone()
            } else {
                format!("{} ({})", p.state, p.last_error)
            };
            vec![
                p.address.clone(),
                p.asn.to_string(),
                p.r#type.clone(),
                if p.state == "Established" {
                    "up"
                } else if !p.held.is_empty() {
                    "held"
                } else {
                    "start"
                }
                .to_owned(),
                human_duration(p.uptime_seconds),
                info,
                format!(
                    "{}/{}/{}",
                    p.prefixes_received, p.prefixes_accepted, p.prefixes_advertised
                ),
                bfd_cell(p.bfd.as_ref()),
            ]
        })
        .collect();
    table(
        &[
            "PEER ADDRESS",
            "AS",
            "PEER TYPE",
            "STATE",
            "SINCE",
            "INFO",
            "PREFIXES RCV/ACC/ADV",
            "BFD",
        ],
        &rows,
    )
}

/// The BFD column: `-` without BFD, else the state, the negotiated interval × multiplier
/// as the detection time once known, and whether BGP is held down by it.
fn bfd_cell(b: Option<&pb::BfdStatus>) -> String {
    let Some(b) = b else {
        return "-".to_owned();
    };
    let mut s = b.state.clone();
    if b.state == "Up" {
        s.push_str(&format!(" {}ms/{}ms", b.tx_interval_ms, b.detect_time_ms));
    } else if b.diagnostic != "none" {
        s.push_str(&format!(" ({})", b.diagnostic));
    }
    if b.holding_bgp {
        s.push_str(", holding BGP");
    }
    s
}

/// The route table of `bgp routes`.
pub fn render_routes(routes: &[pb::Route]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            let mut flags = String::new();
            if r.best {
                flags.push('*');
            }
            if r.multipath {
                flags.push('m');
            }
            if r.stale {
                flags.push('S');
            }
            vec![
                flags,
                r.prefix.clone(),
                r.next_hop.clone(),
                if r.from_peer.is_empty() {
                    "local".to_owned()
                } else {
                    r.from_peer.clone()
                },
                r.as_path.clone(),
                r.local_pref.map(|l| l.to_string()).unwrap_or_default(),
                r.med.map(|m| m.to_string()).unwrap_or_default(),
                r.origin.clone(),
            ]
        })
        .collect();
    table(
        &[
            "", "PREFIX", "NEXT HOP", "FROM", "AS PATH", "LOCPRF", "MED", "ORIGIN",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, state: &str, err: &str) -> pb::Peer {
        pb::Peer {
            address: addr.to_owned(),
            asn: 65002,
            r#type: "eBGP".to_owned(),
            state: state.to_owned(),
            since_unix: 0,
            uptime_seconds: 3723,
            router_id: String::new(),
            prefixes_received: 3,
            prefixes_accepted: 2,
            prefixes_advertised: 1,
            last_error: err.to_owned(),
            bfd: None,
            held: String::new(),
        }
    }

    #[test]
    fn peer_table_has_a_bfd_column() {
        let mut up = peer("192.0.2.2", "Established", "");
        up.bfd = Some(pb::BfdStatus {
            state: "Up".to_owned(),
            remote_state: "Up".to_owned(),
            diagnostic: "none".to_owned(),
            local_discriminator: 1,
            remote_discriminator: 2,
            tx_interval_ms: 100,
            detect_time_ms: 300,
            holding_bgp: false,
        });
        let mut held = peer("192.0.2.3", "Active", "BFD down");
        held.bfd = Some(pb::BfdStatus {
            state: "Down".to_owned(),
            diagnostic: "control detection time expired".to_owned(),
            holding_bgp: true,
            ..up.bfd.clone().unwrap()
        });
        let s = render_peers(&[up, held, peer("192.0.2.4", "Established", "")]);
        assert!(s.contains("| BFD "), "{s}");
        assert!(s.contains("| Up 100ms/300ms "), "{s}");
        assert!(
            s.contains("| Down (control detection time expired), holding BGP |"),
            "{s}"
        );
        assert!(
            s.lines()
                .nth(5)
                .unwrap_or("")
                .ends_with("| -                                                  |"),
            "{s}"
        );
    }

    #[test]
    fn peer_table_shows_state_since_and_counts() {
        let s = render_peers(&[
            peer("192.0.2.2", "Established", ""),
            peer("192.0.2.3", "Active", "hold timer expired"),
        ]);
        assert!(
            s.contains("| 192.0.2.2    | 65002 | eBGP      | up    | 1h02m03s | Established"),
            "{s}"
        );
        assert!(s.contains("Active (hold timer expired)"), "{s}");
        let mut held = peer("192.0.2.4", "Idle", "");
        held.held = "BGPFilter tor-out not found".into();
        let s = render_peers(&[held]);
        assert!(
            s.contains("held") && s.contains("Held (BGPFilter tor-out not found)"),
            "{s}"
        );
        assert!(s.contains("3/2/1"), "{s}");
        let widths: Vec<usize> = s.lines().map(str::len).collect();
        assert!(
            widths.windows(2).all(|w| w[0] == w[1]),
            "ragged table:\n{s}"
        );
    }

    #[test]
    fn route_table_flags_best_multipath_and_stale() {
        let r = pb::Route {
            prefix: "10.244.1.0/26".to_owned(),
            from_peer: String::new(),
            next_hop: "0.0.0.0".to_owned(),
            best: true,
            multipath: true,
            stale: true,
            as_path: "65002 65003".to_owned(),
            origin: "igp".to_owned(),
            med: None,
            local_pref: Some(100),
            communities: vec![],
            large_communities: vec![],
        };
        let s = render_routes(&[r]);
        assert!(
            s.contains("| *mS | 10.244.1.0/26 | 0.0.0.0  | local | 65002 65003 | 100"),
            "{s}"
        );
    }

    #[test]
    fn durations_read_like_birds() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m05s");
        assert_eq!(human_duration(90061), "1d01h01m");
    }
}
