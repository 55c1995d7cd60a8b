//! This node's identity: its BGP addresses (given, or detected from the interface that
//! holds them), its uplink MTU, and its `Node` resource, registered at start and kept
//! pointing at the current addresses (labels and the AS override are the operator's and
//! are never overwritten).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use netlink_packet_route::address::{AddressAttribute, AddressScope};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::route::RouteAttribute;
use rtnetlink::Handle;
use twill_api::resources::{Node, NodeBGPSpec, NodeSpec};
use twill_api::{Datastore, DatastoreError};

/// An address of this host with its prefix length and interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    pub net: IpNet,
    pub ifindex: u32,
}

/// What detection found: the uplink's addresses and MTU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uplink {
    pub v4: Option<HostAddress>,
    pub v6: Option<HostAddress>,
    pub mtu: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("netlink {op}: {source}")]
    Netlink {
        op: &'static str,
        source: rtnetlink::Error,
    },
    #[error("registering Node {node}: {source}")]
    Datastore {
        node: String,
        source: DatastoreError,
    },
}

fn nl(op: &'static str) -> impl FnOnce(rtnetlink::Error) -> NodeError {
    move |source| NodeError::Netlink { op, source }
}

async fn default_oif(handle: &Handle, v6: bool) -> Result<Option<u32>, NodeError> {
    let routes = crate::dataplane::routes::dump(handle, v6)
        .await
        .map_err(nl("list routes"))?;
    Ok(routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0)
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            })
        }))
}

/// Global addresses of the host: (interface index, address/prefix).
async fn global_addresses(handle: &Handle) -> Result<Vec<HostAddress>, NodeError> {
    let msgs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.scope != AddressScope::Universe {
            continue;
        }
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let addr = addr.or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = addr
            && let Ok(net) = IpNet::new(ip, m.header.prefix_len)
        {
            out.push(HostAddress {
                net,
                ifindex: m.header.index,
            });
        }
    }
    Ok(out)
}

/// Pod links are felix's own (`tw*`); they never count as the uplink.
async fn link_names(handle: &Handle) -> Result<BTreeMap<u32, (String, Option<u32>)>, NodeError> {
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links"))?;
    Ok(links
        .iter()
        .map(|l| {
            let name = l
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let mtu = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            });
            (l.header.index, (name, mtu))
        })
        .collect())
}

/// Finds the uplink: the given addresses when set (their interface's MTU), else the
/// interface of the default route, else the first interface with a global address.
pub async fn detect(
    handle: &Handle,
    want_v4: Option<Ipv4Addr>,
    want_v6: Option<Ipv6Addr>,
) -> Result<Uplink, NodeError> {
    let links = link_names(handle).await?;
    let addrs: Vec<HostAddress> = global_addresses(handle)
        .await?
        .into_iter()
        .filter(|a| {
            links
                .get(&a.ifindex)
                .is_some_and(|(n, _)| !n.starts_with("tw") && n != "lo")
        })
        .collect();
    let pick = |v6: bool, want: Option<IpAddr>, oif: Option<u32>| -> Option<HostAddress> {
        let family: Vec<&HostAddress> = addrs
            .iter()
            .filter(|a| a.net.addr().is_ipv6() == v6)
            .collect();
        if let Some(want) = want {
            return Some(
                family
                    .iter()
                    .find(|a| a.net.addr() == want)
                    .map(|a| (*a).clone())
                    .unwrap_or(HostAddress {
                        net: IpNet::from(want),
                        ifindex: 0,
                    }),
            );
        }
        oif.and_then(|i| family.iter().find(|a| a.ifindex == i))
            .or_else(|| family.first())
            .map(|a| (*a).clone())
    };
    let v4 = pick(
        false,
        want_v4.map(IpAddr::V4),
        default_oif(handle, false).await?,
    );
    let v6 = pick(
        true,
        want_v6.map(IpAddr::V6),
        default_oif(handle, true).await?,
    );
    let mtu = v4
        .as_ref()
        .or(v6.as_ref())
        .and_then(|a| links.get(&a.ifindex))
        .and_then(|(_, m)| *m);
    Ok(Uplink { v4, v6, mtu })
}

/// Makes the `Node` resource carry these addresses: creates it when missing, updates
/// only the addresses otherwise (CAS, retried on conflicts). Returns the stored node.
pub async fn register(ds: &Datastore, name: &str, uplink: &Uplink) -> Result<Node, NodeError> {
    let err = |source| NodeError::Datastore {
        node: name.to_string(),
        source,
    };
    let v4 = uplink.v4.as_ref().map(|a| a.net.to_string());
    let v6 = uplink.v6.as_ref().map(|a| a.net.to_string());
    for _ in 0..10 {
        match ds.get::<Node>(None, name).await {
            Ok(mut node) => {
                let bgp = node.spec.bgp.get_or_insert_with(NodeBGPSpec::default);
                if bgp.ipv4_address == v4 && bgp.ipv6_address == v6 {
                    return Ok(node);
                }
                bgp.ipv4_address = v4.clone();
                bgp.ipv6_address = v6.clone();
                match ds.update(&node).await {
                    Ok(n) => return Ok(n),
                    Err(DatastoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(err(e)),
                }
            }
            Err(DatastoreError::NotFound { .. }) => {
                let node = Node {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        labels: Some(BTreeMap::from([(
                            "kubernetes.io/hostname".to_string(),
                            name.to_string(),
                        )])),
                        ..Default::default()
                    },
                    spec: NodeSpec {
                        bgp: Some(NodeBGPSpec {
                            ipv4_address: v4.clone(),
                            ipv6_address: v6.clone(),
                            ..Default::default()
                        }),
                    },
                    status: None,
                };
                match ds.create(&node).await {
                    Ok(n) => return Ok(n),
                    Err(DatastoreError::AlreadyExists { .. }) => continue,
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        }
    }
    Err(err(DatastoreError::Conflict {
        kind: "Node".into(),
        name: name.to_string(),
        expected: "any (gave up after 10 conflicting writes)".into(),
    }))
}
