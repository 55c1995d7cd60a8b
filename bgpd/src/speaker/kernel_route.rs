//! Which route a prefix gets in the kernel: the ECMP set of its best learned paths, a
//! link-local next hop through the interface its peer is reached by. Pure functions of the
//! RIB and the peers, used by the owner and by the kernel feed.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::peer::Peer;
use super::usable_next_hop;
use crate::kernel::{KernelRoute, KernelSync, NextHop, is_link_local};
use crate::rib::Rib;

/// Resolves when kernel sync applied a round of changes (never without kernel sync).
pub(super) async fn applied(kernel: &Option<KernelSync>) {
    match kernel {
        Some(k) => k.applied().await,
        None => std::future::pending().await,
    }
}

/// The kernel route for a prefix: the next hops of its ECMP set, or `None` when the
/// prefix has no usable learned path (originated here, or next hops the kernel cannot use).
/// A link-local next hop goes out of the interface its peer is reached through; an IPv4
/// prefix may have IPv6 next hops (RFC 8950).
pub(super) fn kernel_route(
    rib: &Rib,
    peers: &HashMap<IpAddr, Peer>,
    n: &IpNet,
) -> Option<KernelRoute> {
    let d = rib.get(n)?;
    if d.best()?.source.is_local() {
        return None;
    }
    let hops: Vec<NextHop> = d
        .multipath()
        .iter()
        .filter(|p| usable_next_hop(&p.next_hop, n) && !p.next_hop.is_unspecified())
        .filter_map(|p| {
            if !is_link_local(&p.next_hop) {
                return Some(NextHop::from(p.next_hop));
            }
            let oif = p
                .source
                .addr
                .and_then(|a| peers.get(&a))
                .and_then(|peer| peer.live.as_ref())
                .and_then(|l| l.oif)?;
            Some(NextHop::new(p.next_hop, Some(oif)))
        })
        .collect();
    (!hops.is_empty()).then(|| KernelRoute::new(*n, hops))
}
