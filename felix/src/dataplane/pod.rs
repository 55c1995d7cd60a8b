//! One pod's plumbing: the veth pair (host side `twXXXXXXXXXXX`, pod side `CNI_IFNAME`
//! created directly inside the pod's namespace), the pod's `/32` and `/128`, its gateway
//! routes, and the host routes to it. Teardown, and CHECK of what should be there.
//!
//! Any failure part-way removes the host veth, which takes the pod side, the pod's
//! addresses and routes and felix's host routes through it with it. Never touches a link
//! that is not felix's (host side) or the pod's own `CNI_IFNAME` (pod side).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::netns::{NsHandle, connect_here, connect_in};
use super::routes::{self, HostRoute, RouteOp, RouteTarget, ifindex};
use super::{
    DataplaneError, EEXIST, GATEWAY_V4, GATEWAY_V6, HOST_VETH_MAC, ROUTE_PROTOCOL, host_veth_name,
    is_gone, sysctl,
};

/// What a pod needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Stable identity of the attachment; the host veth name is derived from it.
    pub workload_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub mtu: u32,
    pub addresses: Vec<IpAddr>,
}

/// What plumbing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlumbedPod {
    pub host_ifname: String,
    pub host_mac: String,
    pub pod_mac: String,
}

/// The host's side of pod networking: one netlink connection in felix's namespace.
#[derive(Debug)]
pub struct PodNetwork {
    host: NsHandle,
}

fn mac_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The MAC every host veth carries, as text.
pub fn host_mac_string() -> String {
    mac_string(&HOST_VETH_MAC)
}

fn host_prefix(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

struct LinkInfo {
    index: u32,
    mac: Vec<u8>,
    up: bool,
}

async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkInfo>, DataplaneError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(LinkInfo {
            index: l.header.index,
            mac: l
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Address(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            up: l.header.flags.contains(LinkFlags::Up),
        })),
        Ok(None) => Ok(None),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(DataplaneError::Netlink {
            op: format!("get link {name}"),
            source: e,
        }),
    }
}

async fn addresses_of(handle: &Handle, index: u32) -> Result<Vec<IpAddr>, DataplaneError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list addresses"))?;
    Ok(msgs
        .iter()
        .filter(|m| m.header.index == index)
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })
        .collect())
}

async fn has_default_route(handle: &Handle, v6: bool, oif: u32) -> Result<bool, DataplaneError> {
    let routes = routes::dump(handle, v6)
        .await
        .map_err(DataplaneError::netlink("list routes"))?;
    let want_gw = if v6 {
        RouteAddress::Inet6(GATEWAY_V6)
    } else {
        RouteAddress::Inet(GATEWAY_V4)
    };
    Ok(routes.iter().any(|r| {
        r.header.destination_prefix_length == 0
            && r.attributes.contains(&RouteAttribute::Oif(oif))
            && r.attributes
                .contains(&RouteAttribute::Gateway(want_gw.clone()))
    }))
}

impl PodNetwork {
    /// Opens the host-side netlink connection (in the caller's namespace; needs a tokio
    /// runtime).
    pub fn new() -> Result<PodNetwork, DataplaneError> {
        Ok(PodNetwork {
            host: connect_here()?,
        })
    }

    /// The host-side netlink handle (route sync uses it too).
    pub fn handle(&self) -> &Handle {
        &self.host.handle
    }

    /// Creates and configures the pod's interface; undoes everything on failure.
    pub async fn plumb(&self, spec: &PodSpec) -> Result<PlumbedPod, DataplaneError> {
        let host_ifname = host_veth_name(&spec.workload_id);
        // A leftover of an earlier attempt for this same workload would block the name.
        self.remove_link(&host_ifname).await?;
        let ns_file = File::open(&spec.netns).map_err(|source| DataplaneError::Netns {
            path: spec.netns.display().to_string(),
            source,
        })?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(spec.ifname.clone())
            .mtu(spec.mtu)
            .setns_by_fd(ns_file.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_ifname.clone())
            .mtu(spec.mtu)
            .address(HOST_VETH_MAC.to_vec())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        let created = self.handle().link().add(veth).execute().await;
        drop(ns_file);
        if let Err(e) = created {
            // EEXIST here means the pod already has CNI_IFNAME (ours was just removed).
            return Err(if super::errno(&e) == Some(EEXIST) {
                DataplaneError::LinkExists(spec.ifname.clone())
            } else {
                DataplaneError::Netlink {
                    op: format!("create veth {host_ifname}"),
                    source: e,
                }
            });
        }
        match self.configure(spec, &host_ifname).await {
            Ok(p) => Ok(p),
            Err(e) => {
                if let Err(undo) = self.remove_link(&host_ifname).await {
                    tracing::warn!(%undo, link = %host_ifname, "cannot undo a failed plumb");
                }
                Err(e)
            }
        }
    }

    async fn configure(
        &self,
        spec: &PodSpec,
        host_ifname: &str,
    ) -> Result<PlumbedPod, DataplaneError> {
        let has_v6 = spec.addresses.iter().any(IpAddr::is_ipv6);
        let host_link = link_by_name(self.handle(), host_ifname)
            .await?
            .ok_or_else(|| DataplaneError::NoSuchLink(host_ifname.to_string()))?;
        sysctl::enable_ipv4(host_ifname)?;
        if has_v6 {
            sysctl::enable_ipv6(host_ifname)?;
        }
        self.handle()
            .link()
            .set(LinkUnspec::new_with_index(host_link.index).up().build())
            .execute()
            .await
            .map_err(DataplaneError::netlink(format!("set {host_ifname} up")))?;

        let pod = connect_in(&spec.netns).await?;
        let ph = &pod.handle;
        let pod_link = link_by_name(ph, &spec.ifname)
            .await?
            .ok_or_else(|| DataplaneError::NoSuchLink(spec.ifname.clone()))?;
        for addr in &spec.addresses {
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            let mut req = ph.address().add(pod_link.index, *addr, prefix);
            if addr.is_ipv6() {
                // The address is unique by IPAM: duplicate detection would only delay it.
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute()
                .await
                .map_err(DataplaneError::netlink(format!("add address {addr}")))?;
        }
        ph.link()
            .set(LinkUnspec::new_with_index(pod_link.index).up().build())
            .execute()
            .await
            .map_err(DataplaneError::netlink(format!("set {} up", spec.ifname)))?;
        if spec.addresses.iter().any(IpAddr::is_ipv4) {
            let gw_route = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(GATEWAY_V4, 32)
                .output_interface(pod_link.index)
                .scope(RouteScope::Link)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .build();
            ph.route()
                .add(gw_route)
                .execute()
                .await
                .map_err(DataplaneError::netlink("add pod gateway route"))?;
            // A permanent entry: the pod reaches its gateway even when the node has no
            // route that would let proxy-ARP answer.
            ph.neighbours()
                .add(pod_link.index, IpAddr::V4(GATEWAY_V4))
                .link_layer_address(&HOST_VETH_MAC)
                .execute()
                .await
                .map_err(DataplaneError::netlink("add pod gateway neighbour"))?;
            let default = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(GATEWAY_V4)
                .output_interface(pod_link.index)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .build();
            ph.route()
                .add(default)
                .execute()
                .await
                .map_err(DataplaneError::netlink("add pod default route"))?;
        }
        if has_v6 {
            ph.neighbours()
                .add(pod_link.index, IpAddr::V6(GATEWAY_V6))
                .link_layer_address(&HOST_VETH_MAC)
                .execute()
                .await
                .map_err(DataplaneError::netlink("add pod IPv6 gateway neighbour"))?;
            let default = RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(GATEWAY_V6)
                .output_interface(pod_link.index)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .build();
            ph.route()
                .add(default)
                .execute()
                .await
                .map_err(DataplaneError::netlink("add pod IPv6 default route"))?;
        }
        let ops: Vec<RouteOp> = spec
            .addresses
            .iter()
            .map(|a| {
                RouteOp::Add(HostRoute {
                    dst: host_prefix(*a),
                    target: RouteTarget::Dev(host_ifname.to_string()),
                })
            })
            .collect();
        routes::apply(self.handle(), &ops).await?;
        Ok(PlumbedPod {
            host_ifname: host_ifname.to_string(),
            host_mac: mac_string(&host_link.mac),
            pod_mac: mac_string(&pod_link.mac),
        })
    }

    /// Removes the host link `name` if it exists; returns whether it did.
    async fn remove_link(&self, name: &str) -> Result<bool, DataplaneError> {
        let Some(link) = link_by_name(self.handle(), name).await? else {
            return Ok(false);
        };
        match self.handle().link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if is_gone(&e) => Ok(false),
            Err(e) => Err(DataplaneError::Netlink {
                op: format!("delete link {name}"),
                source: e,
            }),
        }
    }

    /// Tears the pod's plumbing down (its routes through the veth go with it). Succeeds when
    /// it is already gone; returns whether anything was removed.
    pub async fn unplumb(&self, workload_id: &str) -> Result<bool, DataplaneError> {
        self.remove_link(&host_veth_name(workload_id)).await
    }

    /// Verifies the host veth, the pod interface with its addresses and default routes,
    /// and the host routes to the pod.
    pub async fn check(&self, spec: &PodSpec) -> Result<(), DataplaneError> {
        let host_ifname = host_veth_name(&spec.workload_id);
        let host = link_by_name(self.handle(), &host_ifname)
            .await?
            .ok_or_else(|| DataplaneError::NoSuchLink(host_ifname.clone()))?;
        if !host.up {
            return Err(DataplaneError::Mismatch(format!("{host_ifname} is down")));
        }
        let pod = connect_in(&spec.netns).await?;
        let pod_link = link_by_name(&pod.handle, &spec.ifname)
            .await?
            .ok_or_else(|| DataplaneError::NoSuchLink(spec.ifname.clone()))?;
        if !pod_link.up {
            return Err(DataplaneError::Mismatch(format!("{} is down", spec.ifname)));
        }
        let have = addresses_of(&pod.handle, pod_link.index).await?;
        for a in &spec.addresses {
            if !have.contains(a) {
                return Err(DataplaneError::Mismatch(format!(
                    "{} lacks address {a}",
                    spec.ifname
                )));
            }
        }
        for v6 in [false, true] {
            let wanted = spec.addresses.iter().any(|a| a.is_ipv6() == v6);
            if wanted && !has_default_route(&pod.handle, v6, pod_link.index).await? {
                return Err(DataplaneError::Mismatch(format!(
                    "pod has no IPv{} default route via its gateway",
                    if v6 { 6 } else { 4 }
                )));
            }
        }
        let owned = routes::list_owned(self.handle()).await?;
        for a in &spec.addresses {
            let want = HostRoute {
                dst: host_prefix(*a),
                target: RouteTarget::Dev(host_ifname.clone()),
            };
            if !owned.contains(&want) {
                return Err(DataplaneError::Mismatch(format!(
                    "host route {} dev {host_ifname} is missing",
                    want.dst
                )));
            }
        }
        Ok(())
    }

    /// Makes felix's host routes equal `desired` (pods and blackholes for local blocks).
    pub async fn sync_routes(&self, desired: &[HostRoute]) -> Result<Vec<RouteOp>, DataplaneError> {
        routes::sync(self.handle(), desired).await
    }

    /// The names of every link in the host namespace.
    pub async fn link_names(&self) -> Result<std::collections::BTreeSet<String>, DataplaneError> {
        let links: Vec<_> = self
            .handle()
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(DataplaneError::netlink("list links"))?;
        Ok(links
            .iter()
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }

    /// The host veth's interface index, if it exists (tests and drift repair).
    pub async fn host_ifindex(&self, workload_id: &str) -> Result<Option<u32>, DataplaneError> {
        match ifindex(self.handle(), &host_veth_name(workload_id)).await {
            Ok(i) => Ok(Some(i)),
            Err(DataplaneError::NoSuchLink(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
