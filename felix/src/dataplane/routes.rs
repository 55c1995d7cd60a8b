//! Host routes felix owns: desired state as plain data, a pure diff against the kernel's
//! actual routes, and a thin apply.
//!
//! Only routes carrying [`ROUTE_PROTOCOL`] in the main table are ever read as "ours" or
//! deleted; everything else on the host is left alone.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::{DataplaneError, ROUTE_PROTOCOL, is_gone};

/// Where a host route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteTarget {
    /// Out of a (felix-owned) interface, link scope: a local pod.
    Dev(String),
    /// Dropped: an address of a local block that has no pod.
    Blackhole,
}

/// One route felix wants in the main table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostRoute {
    pub dst: IpNet,
    pub target: RouteTarget,
}

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteOp {
    Add(HostRoute),
    /// Same destination, different target: replaced in place (no gap in forwarding).
    Replace(HostRoute),
    Delete(HostRoute),
}

/// The changes that turn `actual` (felix's routes now in the kernel) into `desired`.
/// Deterministic: sorted by destination, deletions last.
pub fn diff_routes(desired: &[HostRoute], actual: &[HostRoute]) -> Vec<RouteOp> {
    let want: BTreeMap<IpNet, &RouteTarget> = desired.iter().map(|r| (r.dst, &r.target)).collect();
    let have: BTreeMap<IpNet, &RouteTarget> = actual.iter().map(|r| (r.dst, &r.target)).collect();
    let mut ops = Vec::new();
    for (dst, target) in &want {
        let route = HostRoute {
            dst: *dst,
            target: (*target).clone(),
        };
        match have.get(dst) {
            None => ops.push(RouteOp::Add(route)),
            Some(t) if t != target => ops.push(RouteOp::Replace(route)),
            Some(_) => {}
        }
    }
    for (dst, target) in &have {
        if !want.contains_key(dst) {
            ops.push(RouteOp::Delete(HostRoute {
                dst: *dst,
                target: (*target).clone(),
            }));
        }
    }
    ops
}

fn base_message(dst: IpNet) -> RouteMessage {
    let mut msg = match dst {
        IpNet::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .build(),
    };
    msg.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
    msg
}

/// The netlink message for `route`; `ifindex` resolves a `Dev` target.
pub fn route_message(route: &HostRoute, ifindex: Option<u32>) -> RouteMessage {
    let mut msg = base_message(route.dst);
    match &route.target {
        RouteTarget::Dev(_) => {
            msg.header.scope = RouteScope::Link;
            if let Some(i) = ifindex {
                msg.attributes.push(RouteAttribute::Oif(i));
            }
        }
        RouteTarget::Blackhole => {
            msg.header.kind = RouteType::BlackHole;
        }
    }
    msg
}

/// Every route of one family (all tables, all protocols), as the kernel dumps them.
pub async fn dump(handle: &Handle, v6: bool) -> Result<Vec<RouteMessage>, rtnetlink::Error> {
    let query = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    handle.route().get(query).execute().try_collect().await
}

/// felix's routes in the main table (both families), with interface names resolved.
pub async fn list_owned(handle: &Handle) -> Result<Vec<HostRoute>, DataplaneError> {
    let names: BTreeMap<u32, String> = handle
        .link()
        .get()
        .execute()
        .map_ok(|l| {
            let name = l.attributes.iter().find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            });
            (l.header.index, name.unwrap_or_default())
        })
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list links"))?;
    let mut out = Vec::new();
    for v6 in [false, true] {
        let routes = dump(handle, v6)
            .await
            .map_err(DataplaneError::netlink("list routes"))?;
        for r in routes {
            if r.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL)
                || r.header.table != RouteHeader::RT_TABLE_MAIN
            {
                continue;
            }
            if let Some(route) = to_host_route(&r, &names) {
                out.push(route);
            }
        }
    }
    Ok(out)
}

fn to_host_route(r: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<HostRoute> {
    let mut addr: Option<IpAddr> = None;
    let mut oif = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(v4)) => addr = Some(IpAddr::V4(*v4)),
            RouteAttribute::Destination(RouteAddress::Inet6(v6)) => addr = Some(IpAddr::V6(*v6)),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    let dst = IpNet::new(addr?, r.header.destination_prefix_length).ok()?;
    let target = if r.header.kind == RouteType::BlackHole {
        RouteTarget::Blackhole
    } else {
        RouteTarget::Dev(names.get(&oif?)?.clone())
    };
    Some(HostRoute { dst, target })
}

pub(crate) async fn ifindex(handle: &Handle, name: &str) -> Result<u32, DataplaneError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(l.header.index),
        Ok(None) => Err(DataplaneError::NoSuchLink(name.to_string())),
        Err(e) if super::errno(&e) == Some(super::ENODEV) => {
            Err(DataplaneError::NoSuchLink(name.to_string()))
        }
        Err(e) => Err(DataplaneError::Netlink {
            op: format!("get link {name}"),
            source: e,
        }),
    }
}

/// Applies `ops`; a delete of a route already gone counts as done.
pub async fn apply(handle: &Handle, ops: &[RouteOp]) -> Result<(), DataplaneError> {
    for op in ops {
        match op {
            RouteOp::Add(r) | RouteOp::Replace(r) => {
                let index = match &r.target {
                    RouteTarget::Dev(name) => Some(ifindex(handle, name).await?),
                    RouteTarget::Blackhole => None,
                };
                handle
                    .route()
                    .add(route_message(r, index))
                    .replace()
                    .execute()
                    .await
                    .map_err(DataplaneError::netlink(format!("add route {}", r.dst)))?;
            }
            RouteOp::Delete(r) => {
                // Like `ip route del`: match any scope and type, but only our protocol.
                let mut msg = base_message(r.dst);
                msg.header.scope = RouteScope::NoWhere;
                msg.header.kind = RouteType::Unspec;
                if let Err(e) = handle.route().del(msg).execute().await
                    && !is_gone(&e)
                {
                    return Err(DataplaneError::Netlink {
                        op: format!("delete route {}", r.dst),
                        source: e,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Makes felix's routes equal `desired`: list, diff, apply. Returns what it changed.
pub async fn sync(handle: &Handle, desired: &[HostRoute]) -> Result<Vec<RouteOp>, DataplaneError> {
    let actual = list_owned(handle).await?;
    let ops = diff_routes(desired, &actual);
    apply(handle, &ops).await?;
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(dst: &str, ifname: &str) -> HostRoute {
        HostRoute {
            dst: dst.parse().unwrap(),
            target: RouteTarget::Dev(ifname.into()),
        }
    }

    fn hole(dst: &str) -> HostRoute {
        HostRoute {
            dst: dst.parse().unwrap(),
            target: RouteTarget::Blackhole,
        }
    }

    #[test]
    fn diff_table() {
        struct Case {
            name: &'static str,
            desired: Vec<HostRoute>,
            actual: Vec<HostRoute>,
            ops: Vec<RouteOp>,
        }
        let cases = vec![
            Case {
                name: "nothing to do when equal",
                desired: vec![dev("10.244.0.2/32", "twa"), hole("10.244.0.0/26")],
                actual: vec![hole("10.244.0.0/26"), dev("10.244.0.2/32", "twa")],
                ops: vec![],
            },
            Case {
                name: "missing route is added",
                desired: vec![dev("10.244.0.2/32", "twa")],
                actual: vec![],
                ops: vec![RouteOp::Add(dev("10.244.0.2/32", "twa"))],
            },
            Case {
                name: "stale route is deleted",
                desired: vec![],
                actual: vec![dev("10.244.0.3/32", "twb")],
                ops: vec![RouteOp::Delete(dev("10.244.0.3/32", "twb"))],
            },
            Case {
                name: "moved pod is replaced in place",
                desired: vec![dev("10.244.0.2/32", "twnew")],
                actual: vec![dev("10.244.0.2/32", "twold")],
                ops: vec![RouteOp::Replace(dev("10.244.0.2/32", "twnew"))],
            },
            Case {
                name: "blackhole turned into a device route is replaced",
                desired: vec![dev("fd00::5/128", "twa")],
                actual: vec![hole("fd00::5/128")],
                ops: vec![RouteOp::Replace(dev("fd00::5/128", "twa"))],
            },
            Case {
                name: "adds before deletes, each sorted by destination",
                desired: vec![dev("10.244.0.9/32", "twc"), dev("10.244.0.1/32", "twa")],
                actual: vec![dev("10.244.0.5/32", "twx")],
                ops: vec![
                    RouteOp::Add(dev("10.244.0.1/32", "twa")),
                    RouteOp::Add(dev("10.244.0.9/32", "twc")),
                    RouteOp::Delete(dev("10.244.0.5/32", "twx")),
                ],
            },
        ];
        for c in cases {
            assert_eq!(diff_routes(&c.desired, &c.actual), c.ops, "{}", c.name);
        }
    }

    #[test]
    fn messages_carry_felix_protocol() {
        let m = route_message(&dev("10.244.0.2/32", "twa"), Some(7));
        assert_eq!(m.header.protocol, RouteProtocol::Other(81));
        assert_eq!(m.header.scope, RouteScope::Link);
        assert!(m.attributes.contains(&RouteAttribute::Oif(7)));
        let b = route_message(&hole("10.244.0.0/26"), None);
        assert_eq!(b.header.kind, RouteType::BlackHole);
        assert_eq!(b.header.destination_prefix_length, 26);
    }
}
