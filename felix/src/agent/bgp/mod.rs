//! BGP configuration from the datastore, as pure data: which AS this node speaks, where it
//! listens, whether it reflects routes, and whom it peers with (the node-to-node mesh,
//! `BGPPeer`s by `peerIP` or `peerSelector`, route-reflector clients), with their filters.
//!
//! The rules follow Calico's: a `BGPPeer` applies to the nodes its `node` or `nodeSelector`
//! names (every node when it names none); a `peerSelector` peering is symmetric (the
//! selected nodes peer back); a node with a `routeReflectorClusterID` treats peers outside
//! its cluster as its clients. Sessions are per address family: an IPv4 session carries
//! IPv4 routes, an IPv6 session IPv6 routes. BFD comes from the `BFDProfile` a peering
//! names (see [`bfd`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use twill_api::resources::{BFDProfile, BGPConfiguration, BGPFilter, BGPPeer, BGPPeerSpec, Node};
use twill_api::selector::Selector;
use twill_bgpd::config::{Family, GracefulRestartConfig, PeerConfig};
use twill_bgpd::policy::Filter;

/// The AS number when no `BGPConfiguration` sets one.
pub const DEFAULT_ASN: u32 = 64512;
/// BGP's port.
pub const DEFAULT_LISTEN_PORT: u16 = 179;

/// Everything the embedded speaker should be doing, computed from the datastore.
#[derive(Clone, Debug, PartialEq)]
pub struct BgpPlan {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub listen_port: u16,
    pub cluster_id: Option<Ipv4Addr>,
    pub peers: Vec<PeerConfig>,
    pub filters: BTreeMap<String, Filter>,
    /// Problems with single objects (they are skipped, the rest applies).
    pub warnings: Vec<String>,
}

/// The inputs, borrowed from felix's cache.
#[derive(Clone, Copy, Debug)]
pub struct BgpInputs<'a> {
    pub node: &'a str,
    pub nodes: &'a BTreeMap<String, Node>,
    pub configs: &'a BTreeMap<String, BGPConfiguration>,
    pub peers: &'a BTreeMap<String, BGPPeer>,
    pub filters: &'a BTreeMap<String, BGPFilter>,
    pub bfd_profiles: &'a BTreeMap<String, BFDProfile>,
    /// Passwords read from Secrets, by `(secret name, key)`.
    pub secrets: &'a BTreeMap<(String, String), String>,
}

/// The Secrets (`(name, key)`) the peers' passwords refer to.
pub fn secret_refs<'a>(
    peers: impl IntoIterator<Item = &'a BGPPeer>,
) -> std::collections::BTreeSet<(String, String)> {
    peers
        .into_iter()
        .filter_map(|p| p.spec.password.as_ref())
        .filter(|pw| pw.value.is_none())
        .filter_map(|pw| pw.secret_key_ref.as_ref())
        .map(|r| (r.name.clone(), r.key.clone()))
        .collect()
}

fn labels(node: &Node) -> BTreeMap<String, String> {
    node.metadata.labels.clone().unwrap_or_default()
}

/// A node's BGP addresses (without prefix length).
pub fn node_addresses(node: &Node) -> Vec<IpAddr> {
    let Some(bgp) = &node.spec.bgp else {
        return Vec::new();
    };
    [&bgp.ipv4_address, &bgp.ipv6_address]
        .into_iter()
        .flatten()
        .filter_map(|a| parse_ip_maybe_prefix(a))
        .collect()
}

fn parse_ip_maybe_prefix(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

fn node_asn(node: &Node, default: u32) -> u32 {
    node.spec
        .bgp
        .as_ref()
        .and_then(|b| b.as_number)
        .map_or(default, |a| a.0)
}

fn cluster_id(node: &Node) -> Option<Ipv4Addr> {
    node.spec
        .bgp
        .as_ref()
        .and_then(|b| b.route_reflector_cluster_id.as_deref())
        .and_then(|c| c.parse().ok())
}

/// Whether a `BGPPeer` applies to a node with this name and labels.
fn applies_to(
    spec: &BGPPeerSpec,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, String> {
    if let Some(n) = spec.node.as_deref().filter(|n| !n.is_empty()) {
        return Ok(n == name);
    }
    match spec.node_selector.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(true),
        Some(s) => Selector::parse(s)
            .map(|sel| sel.matches(labels))
            .map_err(|e| format!("nodeSelector: {e}")),
    }
}

fn peer_selector(spec: &BGPPeerSpec) -> Result<Option<Selector>, String> {
    match spec.peer_selector.as_deref().filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Selector::parse(s)
            .map(Some)
            .map_err(|e| format!("peerSelector: {e}")),
    }
}

/// `ip`, `ip:port` or `[v6]:port`.
fn parse_peer_ip(text: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    text.parse::<SocketAddr>()
        .map(|s| (s.ip(), Some(s.port())))
        .map_err(|_| format!("peerIP: {text:?} is not an IP address or ip:port"))
}

/// Calico's `maxRestartTime` is a duration (`120s`, `2m`); a plain number is seconds.
fn parse_restart_time(text: &str) -> Result<u16, String> {
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600)
    } else {
        (t, 1)
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("maxRestartTime: {text:?} is not a duration"))?;
    let secs = if mult == 0 {
        n / 1000.0
    } else {
        n * f64::from(mult)
    };
    if !(0.0..=4095.0).contains(&secs) {
        return Err(format!("maxRestartTime: {text:?} is outside 0..4095 s"));
    }
    Ok(secs.round() as u16)
}

fn family_of(ip: &IpAddr) -> Family {
    if ip.is_ipv4() {
        Family::Ipv4Unicast
    } else {
        Family::Ipv6Unicast
    }
}

fn base_peer(address: IpAddr, asn: u32, source: Option<IpAddr>) -> PeerConfig {
    let mut p = PeerConfig::new(address, asn);
    p.families = vec![family_of(&address)];
    p.source_address = source;
    p
}

/// My address of `family`, to source sessions from.
fn my_address(me: Option<&Node>, of: &IpAddr) -> Option<IpAddr> {
    me.map(node_addresses)
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.is_ipv4() == of.is_ipv4())
}

/// Computes the plan. Never fails: objects that cannot be used are skipped with a warning.
pub fn plan(inp: BgpInputs<'_>) -> BgpPlan {
    let mut warnings = Vec::new();
    let global = inp.configs.get("default").map(|c| &c.spec);
    let per_node = inp
        .configs
        .get(&format!("node.{}", inp.node))
        .map(|c| &c.spec);
    let default_asn = global
        .and_then(|g| g.as_number)
        .map_or(DEFAULT_ASN, |a| a.0);
    let mesh = global
        .and_then(|g| g.node_to_node_mesh_enabled)
        .unwrap_or(true);
    let listen_port = per_node
        .and_then(|c| c.listen_port)
        .or(global.and_then(|g| g.listen_port))
        .unwrap_or(DEFAULT_LISTEN_PORT);
    let me = inp.nodes.get(inp.node);
    let my_labels = me.map(labels).unwrap_or_default();
    let asn = me.map_or(default_asn, |n| node_asn(n, default_asn));
    let my_cluster = me.and_then(cluster_id);
    let router_id = me
        .map(node_addresses)
        .unwrap_or_default()
        .into_iter()
        .find_map(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
        .unwrap_or_else(|| router_id_from_name(inp.node));

    let mesh_bfd = global.and_then(|g| g.node_mesh_bfd_profile.as_deref());

    // Keyed by address and interface: unnumbered peers have no address (yet). The first
    // peering of an address wins; its BFD profile comes with it (a dangling one holds the
    // peer).
    type Peers = BTreeMap<(IpAddr, Option<String>), PeerConfig>;
    let mut peers: Peers = BTreeMap::new();
    let add = |mut p: PeerConfig, bfd_profile: Option<&str>, peers: &mut Peers| {
        let key = (p.address, p.interface.clone());
        if peers.contains_key(&key) {
            return;
        }
        if let Some(reason) = bfd::apply(&mut p, bfd_profile, inp.bfd_profiles, me) {
            hold(&mut p, &reason);
        }
        peers.insert(key, p);
    };
    // A session with another node: iBGP or eBGP by AS, route-reflector client when I
    // reflect and it is outside my cluster.
    let node_peer = |other: &Node, address: IpAddr| -> PeerConfig {
        let mut p = base_peer(
            address,
            node_asn(other, default_asn),
            my_address(me, &address),
        );
        p.route_reflector_client = my_cluster.is_some() && cluster_id(other) != my_cluster;
        p
    };

    if mesh {
        for (name, other) in inp.nodes {
            if name == inp.node {
                continue;
            }
            for address in node_addresses(other) {
                add(node_peer(other, address), mesh_bfd, &mut peers);
            }
        }
    }

    for (pname, peer) in inp.peers {
        let spec = &peer.spec;
        let selector = match peer_selector(spec) {
            Ok(s) => s,
            Err(e) => {
                warnings.push(format!("BGPPeer {pname}: {e}"));
                continue;
            }
        };
        let applies = match applies_to(spec, inp.node, &my_labels) {
            Ok(a) => a,
            Err(e) => {
                warnings.push(format!("BGPPeer {pname}: {e}"));
                continue;
            }
        };
        let filters: Vec<String> = spec.filters.clone();
        let with_filters = |mut p: PeerConfig| {
            p.import = filters.clone();
            p.export = filters.clone();
            p
        };
        // Unnumbered (`interface`): the speaker discovers the address on the link.
        let unnumbered = spec.interface.as_ref().map(|_| "::".to_owned());
        match (spec.peer_ip.as_ref().or(unnumbered.as_ref()), &selector) {
            (Some(ip), _) if applies => {
                let (address, port) = match parse_peer_ip(ip) {
                    Ok(x) => x,
                    Err(e) => {
                        warnings.push(format!("BGPPeer {pname}: {e}"));
                        continue;
                    }
                };
                let Some(peer_asn) = spec.as_number.map(|a| a.0) else {
                    warnings.push(format!("BGPPeer {pname}: asNumber is required with peerIP"));
                    continue;
                };
                let source = match spec.source_address.as_deref() {
                    _ if spec.interface.is_some() => None,
                    Some("None") => None,
                    _ => my_address(me, &address),
                };
                let mut p = base_peer(address, peer_asn, source);
                if let Some(name) = &spec.interface {
                    // Both families over the link-local session, IPv4 with IPv6 next hops.
                    p.interface = Some(name.clone());
                    p.families = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
                    p.extended_next_hop = true;
                }
                if let Some(port) = port {
                    p.port = port;
                }
                p.password = match &spec.password {
                    None => None,
                    Some(pw) => match (&pw.value, &pw.secret_key_ref) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(r)) => {
                            match inp.secrets.get(&(r.name.clone(), r.key.clone())) {
                                Some(v) => Some(v.clone()),
                                None => {
                                    // Never a session without the password it should have:
                                    // held (listed, with the reason) until it can be read.
                                    let reason = format!(
                                        "password Secret {}/{} cannot be read",
                                        r.name, r.key
                                    );
                                    warnings.push(format!(
                                        "BGPPeer {pname}: {reason}; held until it can"
                                    ));
                                    hold(&mut p, &reason);
                                    None
                                }
                            }
                        }
                        (None, None) => None,
                    },
                };
                p.route_reflector_client = spec.route_reflector_client.unwrap_or(false);
                // An external router hears this node's own prefixes, not the mesh's:
                // each node speaks for its blocks, so the router's next hop for a block
                // is always the node that holds it. A reflector's peers are the exception.
                p.export_local_only = !p.route_reflector_client;
                if let Some(t) = spec.max_restart_time.as_deref() {
                    match parse_restart_time(t) {
                        Ok(secs) => {
                            p.graceful_restart = GracefulRestartConfig {
                                enabled: true,
                                restart_time: secs,
                            }
                        }
                        Err(e) => warnings.push(format!("BGPPeer {pname}: {e}")),
                    }
                }
                // keepOriginalNextHop=false on an eBGP session is BGP's default anyway; on
                // iBGP Calico rewrites the next hop to the node itself.
                p.next_hop_self = !spec.keep_original_next_hop.unwrap_or(false) && peer_asn == asn;
                add(with_filters(p), spec.bfd_profile.as_deref(), &mut peers);
            }
            (None, Some(sel)) => {
                for (name, other) in inp.nodes {
                    if name == inp.node {
                        continue;
                    }
                    // I peer with the selected nodes when the BGPPeer applies to me, and
                    // with the nodes it applies to when I am selected (symmetric).
                    let forward = applies && sel.matches(&labels(other));
                    let backward = sel.matches(&my_labels)
                        && applies_to(spec, name, &labels(other)).unwrap_or(false);
                    if forward || backward {
                        for address in node_addresses(other) {
                            add(
                                with_filters(node_peer(other, address)),
                                spec.bfd_profile.as_deref(),
                                &mut peers,
                            );
                        }
                    }
                }
            }
            (None, None) => {
                warnings.push(format!("BGPPeer {pname}: needs peerIP or peerSelector"));
            }
            _ => {}
        }
    }

    let mut filters = BTreeMap::new();
    for (name, f) in inp.filters {
        match serde_json::to_value(&f.spec).and_then(serde_json::from_value::<Filter>) {
            Ok(filter) => {
                filters.insert(name.clone(), filter);
            }
            Err(e) => warnings.push(format!("BGPFilter {name}: {e}")),
        }
    }
    // A peer naming a filter that does not exist (or cannot be used) would exchange
    // routes unfiltered: a leak to a ToR. It is held (no session, nothing in or out)
    // until every filter it names resolves; the names it does resolve stay.
    let mut peers: Vec<PeerConfig> = peers.into_values().collect();
    for p in &mut peers {
        let mut missing: Vec<String> = p
            .import
            .iter()
            .chain(&p.export)
            .filter(|f| !filters.contains_key(*f))
            .cloned()
            .collect();
        missing.dedup();
        if missing.is_empty() {
            continue;
        }
        for list in [&mut p.import, &mut p.export] {
            list.retain(|f| filters.contains_key(f));
        }
        let reason = format!("BGPFilter not found: {}", missing.join(", "));
        warnings.push(format!(
            "peer {}: {reason}; held until it exists",
            peer_label(p)
        ));
        hold(p, &reason);
    }
    for p in &peers {
        if let Some(held) = p.held.as_deref().filter(|h| h.contains("BFDProfile")) {
            warnings.push(format!(
                "peer {}: {held}; held until it exists",
                peer_label(p)
            ));
        }
    }
    warnings.dedup();
    BgpPlan {
        asn,
        router_id,
        listen_port,
        cluster_id: my_cluster,
        peers,
        filters,
        warnings,
    }
}

/// Holds a peer for `reason` (reasons add up).
fn hold(p: &mut PeerConfig, reason: &str) {
    p.held = Some(match p.held.take() {
        Some(r) => format!("{r}; {reason}"),
        None => reason.to_owned(),
    });
}

/// A stable router id for a node without an IPv4 address.
fn router_id_from_name(name: &str) -> Ipv4Addr {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(name.as_bytes());
    Ipv4Addr::new(d[0] | 1, d[1], d[2], d[3])
}

pub mod bfd;
pub mod communities;
pub mod services;
pub mod status;

#[cfg(test)]
mod tests;

/// How a warning names a peer: its address, or `on IFACE` for an unnumbered one (whose
/// address is not known yet).
fn peer_label(p: &PeerConfig) -> String {
    p.interface
        .as_ref()
        .map_or_else(|| p.address.to_string(), |i| format!("on {i}"))
}
