//! Received UPDATEs into the RIB: loop checks, import policy, max-prefix, End-of-RIB.
//! The hot path of ingest: one shared `Path` per UPDATE and next hop, one hash operation
//! per prefix, nothing allocated per prefix.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::owner::Owner;
use crate::config::Family;
use crate::kernel::is_link_local;
use crate::packet::{Afi, Notification, PathAttributes, Safi, Update};
use crate::policy::{self, Action, Direction};
use crate::rib::Path;
use crate::session::SessionCmd;

/// The family an End-of-RIB marker (RFC 4724 §2) stands for, if `u` is one.
fn end_of_rib(u: &Update) -> Option<Family> {
    if !u.withdrawn.is_empty() || !u.nlri.is_empty() || u.attrs.mp_reach.is_some() {
        return None;
    }
    match &u.attrs.mp_unreach {
        None if u.attrs == PathAttributes::default() => Some(Family::Ipv4Unicast),
        Some(m) if m.withdrawn.is_empty() => match (m.afi, m.safi) {
            (Afi::Ipv4, Safi::Unicast) => Some(Family::Ipv4Unicast),
            (Afi::Ipv6, Safi::Unicast) => Some(Family::Ipv6Unicast),
            _ => None,
        },
        _ => None,
    }
}

impl Owner {
    /// Applies one UPDATE from `addr`; returns the prefixes whose selection changed.
    pub(super) fn ingest(&mut self, addr: IpAddr, mut u: Update) -> Vec<IpNet> {
        let (asn, router_id, cluster_id) = (self.asn, self.router_id, self.cluster_id);
        let Some(peer) = self.peers.get_mut(&addr) else {
            return Vec::new();
        };
        let Some(live) = peer.live.as_mut() else {
            return Vec::new();
        };
        if let Some(f) = end_of_rib(&u) {
            live.eor_pending.remove(&f);
            let complete = live.eor_pending.is_empty();
            tracing::info!(peer = %addr, family = ?f, complete, "End-of-RIB received");
            if complete && peer.stale_until.is_some() {
                self.sweep_stale(addr);
            }
            if complete {
                // The last table after our own restart: the kernel is made right now,
                // not at the next tick.
                self.maybe_reconcile_kernel();
            }
            return Vec::new();
        }
        let source = live.source.clone();
        let mp_reach = u.attrs.mp_reach.take();
        let mp_unreach = u.attrs.mp_unreach.take();
        let mut changed = Vec::new();

        // Withdrawals first (RFC 4271 §9: withdrawn then announced).
        let withdrawn = u
            .withdrawn
            .iter()
            .chain(mp_unreach.iter().flat_map(|m| m.withdrawn.iter()));
        for n in withdrawn {
            if let Some(c) = self.rib.remove(n, Some(addr)) {
                peer.accepted = peer.accepted.saturating_sub(1);
                if c {
                    changed.push(*n);
                }
            } else if !peer.rejected.is_empty() {
                peer.rejected.remove(n);
            }
        }

        // Loop detection (RFC 4271 §9.1.2, RFC 4456 §8): such a path is unfeasible.
        let looped = if source.ebgp {
            u.attrs.as_path.iter().any(|s| match s {
                crate::packet::AsSegment::Sequence(v) | crate::packet::AsSegment::Set(v) => {
                    v.contains(&asn)
                }
                _ => false,
            })
        } else {
            u.attrs.originator_id == Some(router_id)
                || cluster_id.is_some_and(|c| u.attrs.cluster_list.contains(&c))
        };
        if source.ebgp {
            // LOCAL_PREF is not sent across AS borders (RFC 4271 §5.1.5); ignore one if it is.
            u.attrs.local_pref = None;
        }
        let attrs = Arc::new(u.attrs);
        let v4_hop = attrs.next_hop.map(IpAddr::V4);
        let mp_hop = mp_reach.as_ref().map(|m| match m.link_local_next_hop {
            Some(ll) if m.next_hop.is_unspecified() || is_link_local(&m.next_hop) => IpAddr::V6(ll),
            _ => m.next_hop,
        });
        // One shared path per next hop of the UPDATE, however many prefixes it carries.
        let path = |next_hop| {
            Arc::new(Path {
                source: source.clone(),
                attrs: attrs.clone(),
                next_hop,
                stale: false,
            })
        };
        let v4_path = v4_hop.filter(|_| !u.nlri.is_empty()).map(path);
        let mp_path = mp_hop.map(path);
        // Every prefix gets its own reference to the shared path. Taking them all up
        // front, back to back, keeps the reference-count updates (locked instructions,
        // which wait for every pending store) out of the loop of hash-table inserts
        // below, whose stores to a table far bigger than the cache then overlap.
        let mp_nlri: &[IpNet] = mp_reach.as_ref().map_or(&[], |m| &m.nlri);
        let refs = |p: &Option<Arc<Path>>, n: usize| match p {
            Some(p) if n > 0 => vec![p.clone(); n],
            _ => Vec::new(),
        };
        let v4_refs = refs(&v4_path, u.nlri.len());
        let mp_refs = refs(&mp_path, mp_nlri.len());
        drop((v4_path, mp_path));
        let announced = u
            .nlri
            .iter()
            .zip(v4_refs)
            .chain(mp_nlri.iter().zip(mp_refs));
        for (n, path) in announced {
            let reject =
                looped || policy::evaluate(&peer.import, Direction::Import, n) == Action::Reject;
            if reject {
                if self.rib.remove(n, Some(addr)).is_some_and(|c| {
                    peer.accepted = peer.accepted.saturating_sub(1);
                    c
                }) {
                    changed.push(*n);
                }
                peer.rejected.insert(*n);
                continue;
            }
            let up = self.rib.update(*n, path);
            if up.added {
                peer.accepted += 1;
            }
            if up.changed {
                changed.push(*n);
            }
            if !peer.rejected.is_empty() {
                peer.rejected.remove(n);
            }
        }

        if policy::exceeds_max_prefixes(peer.cfg.max_prefixes, peer.accepted as usize) && !peer.shut
        {
            let limit = peer.cfg.max_prefixes.unwrap_or_default();
            tracing::warn!(peer = %addr, limit, "maximum number of prefixes exceeded");
            peer.shut = true;
            peer.last_error = Some(format!("maximum prefixes ({limit}) exceeded"));
            self.metrics.error("max_prefixes");
            // RFC 4486 §4: the family whose prefixes went over the limit.
            let (afi, safi) = match &mp_reach {
                Some(m) if u.nlri.is_empty() => (m.afi, m.safi),
                _ => (Afi::Ipv4, Safi::Unicast),
            };
            peer.session
                .send(SessionCmd::Stop(Notification::max_prefixes(
                    afi, safi, limit,
                )));
        }
        changed
    }
}
