//! What the control API and `twillctl` show: peer status and route listings (Loc-RIB,
//! Adj-RIB-In, Adj-RIB-Out), built from the owner's state on request. Read-only.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::owner::Owner;
use super::types::{BfdPeerStatus, PeerStatus, RouteEntry, RouteQuery, RouteTable};

impl Owner {
    pub(super) fn peer_status(&self) -> Vec<PeerStatus> {
        let mut v: Vec<PeerStatus> = self
            .peers
            .values()
            .map(|p| PeerStatus {
                address: p.cfg.address,
                asn: p.cfg.asn,
                kind: if p.is_ebgp(self.asn) {
                    "eBGP"
                } else if p.cfg.route_reflector_client && self.cluster_id.is_some() {
                    "iBGP RR-client"
                } else {
                    "iBGP"
                },
                state: p.state,
                since: p.since,
                router_id: p.live.as_ref().map(|l| l.negotiated.peer_id),
                received: p.accepted + p.rejected.len() as u64,
                accepted: p.accepted,
                advertised: p.out.len() as u64,
                last_error: p.last_error.clone(),
                bfd: p.cfg.bfd_enabled().map(|_| BfdPeerStatus {
                    session: self.bfd_status.get(&p.cfg.address).copied().unwrap_or(
                        crate::bfd::SessionStatus {
                            state: crate::bfd::State::Down,
                            remote_state: crate::bfd::State::Down,
                            diag: crate::bfd::Diag::None,
                            local_discr: 0,
                            remote_discr: 0,
                            tx_interval: std::time::Duration::ZERO,
                            detect_time: std::time::Duration::ZERO,
                        },
                    ),
                    holding_bgp: self.bfd_held.contains(&p.cfg.address),
                }),
                held: p.cfg.held.clone(),
            })
            .collect();
        v.sort_by_key(|p| p.address);
        v
    }

    pub(super) fn routes(&self, q: &RouteQuery) -> Vec<RouteEntry> {
        let wanted = |n: &IpNet| q.prefix.is_none_or(|f| f.contains(n));
        let mut v = Vec::new();
        match q.table {
            RouteTable::LocRib | RouteTable::AdjRibIn(_) => {
                let only = match q.table {
                    RouteTable::AdjRibIn(a) => Some(a),
                    _ => None,
                };
                for (n, d) in self.rib.iter().filter(|(n, _)| wanted(n)) {
                    let multi: Vec<Option<IpAddr>> =
                        d.multipath().iter().map(|p| p.source.addr).collect();
                    for (i, p) in d.paths().iter().enumerate() {
                        if only.is_some_and(|a| p.source.addr != Some(a)) {
                            continue;
                        }
                        v.push(RouteEntry {
                            prefix: n,
                            from: p.source.addr,
                            next_hop: p.next_hop,
                            best: i == 0,
                            multipath: multi.contains(&p.source.addr) && !p.source.is_local(),
                            stale: p.stale,
                            attrs: (*p.attrs).clone(),
                        });
                    }
                }
            }
            RouteTable::AdjRibOut(a) => {
                if let Some(p) = self.peers.get(&a) {
                    for (n, attrs) in p.out.iter().filter(|(n, _)| wanted(n)) {
                        let next_hop = attrs
                            .next_hop
                            .map(IpAddr::V4)
                            .or_else(|| attrs.mp_reach.as_ref().map(|m| m.next_hop))
                            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                        v.push(RouteEntry {
                            prefix: *n,
                            from: None,
                            next_hop,
                            best: true,
                            multipath: false,
                            stale: false,
                            attrs: (**attrs).clone(),
                        });
                    }
                }
            }
        }
        v.sort_by_key(|e| (e.prefix, !e.best));
        v
    }
}
