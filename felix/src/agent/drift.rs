//! Drift detection: a netlink monitor (like `ip monitor route link`) that wakes the
//! reconciler when something felix or its speaker owns changes behind its back: a route
//! of Twill's protocols deleted or replaced, a `tw*` link removed; and an nf_tables
//! monitor (like `nft monitor`) for felix's policy table (or, with the iptables
//! dataplane, any table: iptables-nft keeps its chains there). The reconciler then
//! re-reads the kernel and repairs; this module only notices.

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteMessage, RouteProtocol};
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

use crate::dataplane::{BGPD_ROUTE_PROTOCOL, ROUTE_PROTOCOL};
use crate::policy::DataplaneKind;
use crate::policy::names::TABLE;
use twill_bgpd::task::TaskGuard;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// A route felix installs (host routes, blackholes).
    FelixRoute,
    /// A route the embedded speaker installs (learned routes).
    BgpRoute,
    /// A felix-owned link went away.
    Link,
    /// nf_tables changed in a table felix's policy lives in (its own changes included:
    /// the reconciler checks before it rewrites anything).
    Policy,
}

fn ours(r: &RouteMessage) -> Option<Drift> {
    match r.header.protocol {
        RouteProtocol::Other(p) if p == ROUTE_PROTOCOL => Some(Drift::FelixRoute),
        RouteProtocol::Other(p) if p == BGPD_ROUTE_PROTOCOL => Some(Drift::BgpRoute),
        _ => None,
    }
}

fn felix_link(l: &LinkMessage) -> bool {
    l.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::IfName(n) if n.starts_with("tw")))
}

/// Classifies one netlink notification. Only deletions matter: felix's own additions
/// come back as notifications too, and must not wake it in a loop.
pub fn classify(msg: &RouteNetlinkMessage) -> Option<Drift> {
    match msg {
        RouteNetlinkMessage::DelRoute(r) => ours(r),
        RouteNetlinkMessage::DelLink(l) if felix_link(l) => Some(Drift::Link),
        _ => None,
    }
}

/// Starts the nf_tables monitor for `dataplane`'s tables in the current network namespace.
pub fn monitor_policy(
    dataplane: DataplaneKind,
    tx: mpsc::UnboundedSender<Drift>,
) -> std::io::Result<()> {
    let wanted = move |table: &str| match dataplane {
        DataplaneKind::Nftables => table == TABLE,
        DataplaneKind::Iptables => true,
    };
    crate::policy::nft::monitor::watch(wanted, tx, Drift::Policy)
}

/// Starts the monitor in the current network namespace; drift is reported on `tx`.
pub fn monitor(tx: mpsc::UnboundedSender<Drift>) -> std::io::Result<TaskGuard> {
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
    ])?;
    let conn_task = tokio::spawn(conn);
    Ok(TaskGuard::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            if let NetlinkPayload::InnerMessage(inner) = &msg.payload
                && let Some(d) = classify(inner)
                && tx.send(d).is_err()
            {
                break;
            }
        }
        conn_task.abort();
    }))
}
