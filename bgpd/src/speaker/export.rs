//! What each peer is sent: eligibility (split horizon, iBGP and route-reflection rules,
//! families, export policy, well-known communities), the attributes as rewritten for
//! that peer (AS_PATH prepend, next hop, LOCAL_PREF, ORIGINATOR_ID/CLUSTER_LIST), and the
//! packing of the result into UPDATE bytes. Pure over the RIB and one peer's Adj-RIB-Out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;

use super::peer::Peer;
use super::same_family;
use crate::config::Family;
use crate::packet::{
    Afi, AsSegment, DecodeCxt, Message, MpReach, MpUnreach, PathAttributes, Safi, Update,
    encode_message, pack_updates,
};
use crate::policy::{self, Action, Direction};
use crate::rib::{Path, Rib, best::DEFAULT_LOCAL_PREF};

/// RFC 1997 well-known communities.
const NO_EXPORT: u32 = 0xFFFF_FF01;
const NO_ADVERTISE: u32 = 0xFFFF_FF02;

#[derive(Clone, Copy, Debug)]
pub(super) struct ExportCtx {
    pub asn: u32,
    pub cluster_id: Option<Ipv4Addr>,
}

/// Outbound attributes per best path (a `Path` is shared by the prefixes of one UPDATE):
/// prefixes that share them share one `Arc`, so they pack into the same UPDATEs.
type Cache = HashMap<usize, Option<Arc<PathAttributes>>, foldhash::fast::RandomState>;

/// Brings the peer's Adj-RIB-Out in line with the RIB for `prefixes`; returns the UPDATEs
/// to send, if anything changed.
pub(super) fn export(
    ctx: &ExportCtx,
    rib: &Rib,
    peer: &mut Peer,
    prefixes: &[IpNet],
) -> Option<Bytes> {
    let live = peer.live.as_ref()?;
    let cxt = DecodeCxt {
        four_octet_as: live.negotiated.four_octet_as,
    };
    let mut cache = Cache::default();
    let mut groups: HashMap<usize, (Arc<PathAttributes>, Vec<IpNet>)> = HashMap::new();
    let mut withdraw = Vec::new();
    // The prefixes of one UPDATE come in a row with the same best path: remember the last.
    let mut last: Option<(usize, Option<Arc<PathAttributes>>)> = None;
    for n in prefixes {
        let best = rib.get(n).and_then(|d| d.best_shared());
        let out = best
            .and_then(|b| {
                // Split horizon, the common case when the only peer is the sender: no
                // lookups at all.
                if b.source.addr == Some(peer.cfg.address) {
                    return None;
                }
                // Keyed by path and family: what is sent differs for an IPv4 and an IPv6
                // prefix of one path (the low bit of an `Arc` pointer is always clear).
                let key = Arc::as_ptr(b) as usize | usize::from(n.addr().is_ipv4());
                if let Some((k, a)) = &last
                    && *k == key
                {
                    return a.clone();
                }
                let a = cache
                    .entry(key)
                    .or_insert_with(|| outbound(ctx, peer, b, n))
                    .clone();
                last = Some((key, a.clone()));
                a
            })
            .filter(|_| eligible_prefix(peer, n));
        match out {
            Some(a) => {
                if peer.out.advertise(*n, a.clone()) {
                    groups
                        .entry(Arc::as_ptr(&a) as usize)
                        .or_insert_with(|| (a, Vec::new()))
                        .1
                        .push(*n);
                }
            }
            None => {
                if !peer.out.is_empty() && peer.out.withdraw(n) {
                    withdraw.push(*n);
                }
            }
        }
    }
    let mut buf = BytesMut::new();
    if !withdraw.is_empty() {
        pack_updates(&PathAttributes::default(), &[], &withdraw, &cxt, &mut buf);
    }
    for (attrs, nets) in groups.values() {
        pack_updates(attrs, nets, &[], &cxt, &mut buf);
    }
    (!buf.is_empty()).then(|| buf.freeze())
}

/// Per-prefix checks that do not depend on the path: family and export policy.
fn eligible_prefix(peer: &Peer, n: &IpNet) -> bool {
    let Some(live) = peer.live.as_ref() else {
        return false;
    };
    live.negotiated.families.contains(&Family::of(n))
        && policy::evaluate(&peer.export, Direction::Export, n) == Action::Accept
}

/// The attributes `best` is sent to `peer` with, or `None` when it must not be sent.
fn outbound(ctx: &ExportCtx, peer: &Peer, best: &Path, n: &IpNet) -> Option<Arc<PathAttributes>> {
    let live = peer.live.as_ref()?;
    // Split horizon: never back to where it came from.
    if best.source.addr == Some(peer.cfg.address) {
        return None;
    }
    if peer.cfg.export_local_only && !best.source.is_local() {
        return None;
    }
    if best.attrs.communities.contains(&NO_ADVERTISE) {
        return None;
    }
    let peer_ebgp = peer.cfg.asn != ctx.asn;
    if peer_ebgp && best.attrs.communities.contains(&NO_EXPORT) {
        return None;
    }
    let from_ibgp = !best.source.is_local() && !best.source.ebgp;
    let reflecting = from_ibgp && !peer_ebgp;
    if reflecting {
        // RFC 4456 §6: from a client to everyone; from a non-client only to clients.
        ctx.cluster_id?;
        if !best.source.rr_client && !peer.cfg.route_reflector_client {
            return None;
        }
    }
    let mut a = PathAttributes {
        origin: best.attrs.origin,
        as_path: best.attrs.as_path.clone(),
        med: best.attrs.med,
        atomic_aggregate: best.attrs.atomic_aggregate,
        aggregator: best.attrs.aggregator,
        communities: best.attrs.communities.clone(),
        large_communities: best.attrs.large_communities.clone(),
        unknown: best.attrs.unknown_for_readvertisement(),
        ..Default::default()
    };
    if peer_ebgp {
        prepend(&mut a.as_path, ctx.asn);
        if !best.source.is_local() {
            // RFC 4271 §5.1.4: a MED learned from a neighbouring AS is not passed to another.
            a.med = None;
        }
    } else {
        a.local_pref = Some(best.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        if reflecting {
            a.originator_id = Some(best.attrs.originator_id.unwrap_or(best.source.router_id));
            a.cluster_list = best.attrs.cluster_list.clone();
            if let Some(c) = ctx.cluster_id {
                a.cluster_list.insert(0, c);
            }
        }
    }
    // A link-local next hop (RFC 2545) means nothing beyond the link it was learned on.
    let next_hop_self = peer_ebgp
        || peer.cfg.next_hop_self
        || best.source.is_local()
        || crate::kernel::is_link_local(&best.next_hop);
    let next_hop = if next_hop_self {
        match (live.local_addr, n, live.link_global_v6) {
            // IPv6 over an IPv4 session: our IPv6 address on the link.
            (IpAddr::V4(_), IpNet::V6(_), Some(v6)) => IpAddr::V6(v6),
            _ => live.local_addr,
        }
    } else {
        best.next_hop
    };
    // RFC 8950: an IPv4 prefix goes with an IPv6 next hop when the peer agreed to it.
    let extended = live.negotiated.extended_next_hop && matches!(n, IpNet::V4(_));
    if !(same_family(&next_hop, n) || extended && next_hop.is_ipv6()) || next_hop.is_unspecified() {
        return None;
    }
    match next_hop {
        IpAddr::V4(v4) => a.next_hop = Some(v4),
        IpAddr::V6(v6) => {
            // RFC 2545 §3: our own next hop on a shared link goes with its link-local twin.
            let link_local_next_hop = live.link_local.filter(|_| next_hop_self);
            a.mp_reach = Some(MpReach {
                afi: if extended { Afi::Ipv4 } else { Afi::Ipv6 },
                safi: Safi::Unicast,
                next_hop: IpAddr::V6(v6),
                link_local_next_hop,
                nlri: Vec::new(),
            });
        }
    }
    Some(Arc::new(a))
}

fn prepend(path: &mut Vec<AsSegment>, asn: u32) {
    match path.first_mut() {
        Some(AsSegment::Sequence(v)) if v.len() < 255 => v.insert(0, asn),
        _ => path.insert(0, AsSegment::Sequence(vec![asn])),
    }
}

/// End-of-RIB markers (RFC 4724 §2) for every negotiated family.
pub(super) fn end_of_rib(peer: &Peer) -> Option<Bytes> {
    let live = peer.live.as_ref()?;
    let cxt = DecodeCxt {
        four_octet_as: live.negotiated.four_octet_as,
    };
    let mut buf = BytesMut::new();
    for f in &live.negotiated.families {
        let u = match f {
            Family::Ipv4Unicast => Update::default(),
            Family::Ipv6Unicast => Update {
                attrs: PathAttributes {
                    mp_unreach: Some(MpUnreach {
                        afi: Afi::Ipv6,
                        safi: Safi::Unicast,
                        withdrawn: Vec::new(),
                    }),
                    ..Default::default()
                },
                ..Default::default()
            },
        };
        encode_message(&Message::Update(u), &cxt, &mut buf);
    }
    (!buf.is_empty()).then(|| buf.freeze())
}
