//! The whole IPAM picture read at once (pools, blocks, handles, affinities, nodes,
//! workloads) and the consistency check `twillctl ipam check` and the controller run on it.
//!
//! Loading only reads; `check` is a pure function of the loaded picture. Nothing here
//! writes to the datastore.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use twill_api::datastore::Datastore;
use twill_api::resources::native::Pod;
use twill_api::resources::{BlockAffinity, IPAMBlock, IPAMHandle, IPPool, Node, WorkloadEndpoint};

use crate::allocator::IpamError;
use crate::block::{Allocation, Block};
use crate::model::{block_from_spec, pool_from_api};
use crate::plan::Pool;

/// Where live workloads are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadSource {
    /// `WorkloadEndpoint`s (etcd mode).
    Endpoints,
    /// Kubernetes `Pod`s (Kubernetes mode).
    Pods,
}

/// One live workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Pod (or endpoint) name.
    pub name: String,
    /// IPAM handle, when known.
    pub handle: Option<String>,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// The host interface its node's felix reported missing (`twill.dev/interface-missing`).
    pub missing_interface: Option<String>,
}

/// The annotation felix puts on an endpoint whose host interface vanished while its
/// container lives: the interface's name.
pub const INTERFACE_MISSING: &str = "twill.dev/interface-missing";

/// The live workloads, indexed.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    /// Every workload.
    pub all: Vec<Workload>,
    by_handle: BTreeSet<String>,
    by_pod: BTreeSet<(String, String)>,
    by_addr: HashMap<IpAddr, Vec<usize>>,
}

impl Workloads {
    /// Indexes `all`.
    pub fn new(all: Vec<Workload>) -> Self {
        let mut w = Workloads {
            all,
            ..Default::default()
        };
        for (i, wl) in w.all.iter().enumerate() {
            if let Some(h) = &wl.handle {
                w.by_handle.insert(h.clone());
            }
            w.by_pod.insert((wl.namespace.clone(), wl.name.clone()));
            for a in &wl.addrs {
                w.by_addr.entry(*a).or_default().push(i);
            }
        }
        w
    }

    /// Whether the allocation of `addr` belongs to a live workload.
    pub fn holds(&self, addr: IpAddr, alloc: &Allocation) -> bool {
        if self.by_handle.contains(&alloc.handle) {
            return true;
        }
        if let (Some(ns), Some(pod)) = (alloc.attrs.get("namespace"), alloc.attrs.get("pod"))
            && self.by_pod.contains(&(ns.clone(), pod.clone()))
        {
            return true;
        }
        self.by_addr.contains_key(&addr)
    }

    /// Live workloads using `addr`.
    pub fn using(&self, addr: IpAddr) -> Vec<&Workload> {
        self.by_addr
            .get(&addr)
            .map(|v| v.iter().filter_map(|&i| self.all.get(i)).collect())
            .unwrap_or_default()
    }
}

/// Everything IPAM-related, read in one pass.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// Pools that parse, with their stored objects.
    pub pools: Vec<(IPPool, Pool)>,
    /// Blocks that parse.
    pub blocks: Vec<(IPAMBlock, Block)>,
    /// Blocks that do not parse: (name, reason).
    pub corrupt: Vec<(String, String)>,
    /// The borrowed-allocation index.
    pub handles: Vec<IPAMHandle>,
    /// Affinity records.
    pub affinities: Vec<BlockAffinity>,
    /// Names of Twill `Node`s.
    pub nodes: BTreeSet<String>,
    /// Live workloads.
    pub workloads: Workloads,
}

fn addrs_of_networks(nets: &[String]) -> Vec<IpAddr> {
    nets.iter()
        .filter_map(|s| {
            s.parse::<IpNet>()
                .map(|n| n.addr())
                .or_else(|_| s.parse::<IpAddr>())
                .ok()
        })
        .collect()
}

/// Reads the live workloads.
pub async fn load_workloads(
    ds: &Datastore,
    source: WorkloadSource,
) -> Result<Workloads, IpamError> {
    let all = match source {
        WorkloadSource::Endpoints => ds
            .list::<WorkloadEndpoint>(None)
            .await?
            .items
            .into_iter()
            .map(|w| Workload {
                namespace: w.metadata.namespace.unwrap_or_default(),
                name: w.spec.pod.clone().or(w.metadata.name).unwrap_or_default(),
                handle: w.spec.ipam_handle_id.clone(),
                addrs: addrs_of_networks(&w.spec.ip_networks),
                missing_interface: w
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(INTERFACE_MISSING).cloned()),
            })
            .collect(),
        WorkloadSource::Pods => ds
            .list::<Pod>(None)
            .await?
            .items
            .into_iter()
            .map(|p| {
                let ips: Vec<String> = p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ips.as_ref())
                    .map(|ips| ips.iter().map(|i| i.ip.clone()).collect())
                    .unwrap_or_default();
                Workload {
                    namespace: p.metadata.namespace.unwrap_or_default(),
                    name: p.metadata.name.unwrap_or_default(),
                    handle: None,
                    addrs: addrs_of_networks(&ips),
                    missing_interface: None,
                }
            })
            .collect(),
    };
    Ok(Workloads::new(all))
}

impl Inventory {
    /// Reads everything.
    pub async fn load(ds: &Datastore, source: WorkloadSource) -> Result<Inventory, IpamError> {
        let mut inv = Inventory::default();
        for p in ds.list::<IPPool>(None).await?.items {
            if let Ok(pool) = pool_from_api(&p) {
                inv.pools.push((p, pool));
            }
        }
        for b in ds.list::<IPAMBlock>(None).await?.items {
            match block_from_spec(&b.spec) {
                Ok(block) => inv.blocks.push((b, block)),
                Err(e) => inv
                    .corrupt
                    .push((b.metadata.name.clone().unwrap_or_default(), e.to_string())),
            }
        }
        inv.handles = ds.list::<IPAMHandle>(None).await?.items;
        inv.affinities = ds.list::<BlockAffinity>(None).await?.items;
        inv.nodes = ds
            .list::<Node>(None)
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        inv.workloads = load_workloads(ds, source).await?;
        Ok(inv)
    }

    /// Every used address: (address, block, allocation).
    pub fn used(&self) -> impl Iterator<Item = (IpAddr, &Block, &Allocation)> {
        self.blocks
            .iter()
            .flat_map(|(_, b)| b.used_addrs().map(move |(ip, a)| (ip, b, a)))
    }

    /// The pool a block belongs to.
    pub fn pool_of(&self, cidr: &IpNet) -> Option<&Pool> {
        self.pools.iter().map(|(_, p)| p).find(|p| p.owns(cidr))
    }

    /// Per pool: (name, cidr, size, in use, borrowed addresses, blocks).
    pub fn pool_usage(&self) -> Vec<PoolUsage> {
        self.pools
            .iter()
            .map(|(_, p)| {
                let host_bits = u32::from(p.cidr.max_prefix_len() - p.cidr.prefix_len());
                let size = if host_bits >= 128 {
                    u128::MAX
                } else {
                    1u128 << host_bits
                };
                let mut usage = PoolUsage {
                    name: p.name.clone(),
                    cidr: p.cidr,
                    size,
                    used: 0,
                    borrowed: 0,
                    blocks: 0,
                    disabled: p.disabled,
                };
                for (_, b) in self.blocks.iter().filter(|(_, b)| p.owns(&b.cidr)) {
                    usage.blocks += 1;
                    usage.used += b.used() as u128;
                    usage.borrowed += b
                        .allocations
                        .values()
                        .filter(|a| a.attrs.get("node") != b.affinity.as_ref())
                        .count() as u128;
                }
                usage
            })
            .collect()
    }

    /// Every inconsistency, sorted.
    pub fn check(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (name, reason) in &self.corrupt {
            out.push(Finding::CorruptBlock {
                block: name.clone(),
                reason: reason.clone(),
            });
        }
        for w in &self.workloads.all {
            if let Some(interface) = &w.missing_interface {
                out.push(Finding::InterfaceMissing {
                    workload: format!("{}/{}", w.namespace, w.name),
                    interface: interface.clone(),
                });
            }
        }
        let mut holders: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
        for (ip, _, a) in self.used() {
            holders.entry(ip).or_default().push(a.handle.clone());
        }
        for (ip, hs) in &holders {
            if hs.len() > 1 {
                out.push(Finding::Duplicate {
                    addr: *ip,
                    holders: hs.clone(),
                });
            }
        }
        for (ip, block, a) in self.used() {
            if !self.workloads.holds(ip, a) && !crate::lb::is_lb_handle(&a.handle) {
                out.push(Finding::AllocatedButUnused {
                    addr: ip,
                    handle: a.handle.clone(),
                    block: block.cidr,
                });
            }
            if a.handle.is_empty() {
                out.push(Finding::UsedWithoutHandle {
                    addr: ip,
                    block: block.cidr,
                });
            }
        }
        for w in &self.workloads.all {
            for addr in &w.addrs {
                let in_any_pool = self.pools.iter().any(|(_, p)| p.cidr.contains(addr));
                if in_any_pool && !holders.contains_key(addr) {
                    out.push(Finding::UsedButNotAllocated {
                        addr: *addr,
                        workload: format!("{}/{}", w.namespace, w.name),
                    });
                }
            }
        }
        for (addr, ws) in &self.workloads.by_addr {
            if ws.len() > 1 {
                out.push(Finding::Duplicate {
                    addr: *addr,
                    holders: ws
                        .iter()
                        .filter_map(|&i| self.workloads.all.get(i))
                        .map(|w| format!("{}/{}", w.namespace, w.name))
                        .collect(),
                });
            }
        }
        let handles_held: BTreeSet<(&str, IpNet)> = self
            .used()
            .map(|(_, b, a)| (a.handle.as_str(), b.cidr))
            .collect();
        for h in &self.handles {
            let holds_any = h.spec.block.keys().any(|c| {
                c.parse::<IpNet>()
                    .is_ok_and(|c| handles_held.contains(&(h.spec.handle_id.as_str(), c)))
            });
            if !holds_any {
                out.push(Finding::HandleWithoutAddresses {
                    handle: h.spec.handle_id.clone(),
                });
            }
        }
        for (_, b) in &self.blocks {
            if let Some(node) = &b.affinity
                && !self.nodes.contains(node)
            {
                out.push(Finding::BlockOfMissingNode {
                    block: b.cidr,
                    node: node.clone(),
                });
            }
            if self.pool_of(&b.cidr).is_none() && !b.is_empty() {
                out.push(Finding::OutsidePools {
                    block: b.cidr,
                    used: b.used(),
                });
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Usage of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolUsage {
    /// Pool name.
    pub name: String,
    /// Pool network.
    pub cidr: IpNet,
    /// Addresses in the pool.
    pub size: u128,
    /// Addresses in use.
    pub used: u128,
    /// Addresses in use by a node other than the block's.
    pub borrowed: u128,
    /// Blocks carved.
    pub blocks: usize,
    /// Pool disabled.
    pub disabled: bool,
}

/// One inconsistency found by `check`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    /// A block that does not parse.
    CorruptBlock { block: String, reason: String },
    /// One address held twice.
    Duplicate { addr: IpAddr, holders: Vec<String> },
    /// Allocated, but no live workload uses it (a leak, or a workload being created).
    AllocatedButUnused {
        addr: IpAddr,
        handle: String,
        block: IpNet,
    },
    /// Marked used with no handle.
    UsedWithoutHandle { addr: IpAddr, block: IpNet },
    /// A workload uses an address of a pool that no block has allocated.
    UsedButNotAllocated { addr: IpAddr, workload: String },
    /// A handle index entry whose handle holds nothing where it says.
    HandleWithoutAddresses { handle: String },
    /// A block affine to a node that does not exist.
    BlockOfMissingNode { block: IpNet, node: String },
    /// A block with allocations outside every pool.
    OutsidePools { block: IpNet, used: usize },
    /// A workload whose host interface is gone (reported by its node's felix).
    InterfaceMissing { workload: String, interface: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::CorruptBlock { block, reason } => write!(f, "corrupt block {block}: {reason}"),
            Finding::Duplicate { addr, holders } => {
                write!(f, "duplicate: {addr} held by {}", holders.join(", "))
            }
            Finding::AllocatedButUnused {
                addr,
                handle,
                block,
            } => write!(
                f,
                "allocated but unused: {addr} (handle {handle}, block {block}) has no live workload"
            ),
            Finding::UsedWithoutHandle { addr, block } => {
                write!(f, "used without handle: {addr} in block {block}")
            }
            Finding::UsedButNotAllocated { addr, workload } => {
                write!(f, "used but not allocated: {addr} used by {workload}")
            }
            Finding::HandleWithoutAddresses { handle } => {
                write!(f, "handle without addresses: {handle}")
            }
            Finding::BlockOfMissingNode { block, node } => {
                write!(f, "block {block} is affine to missing node {node}")
            }
            Finding::OutsidePools { block, used } => {
                write!(
                    f,
                    "block {block} with {used} addresses in use is outside every pool"
                )
            }
            Finding::InterfaceMissing {
                workload,
                interface,
            } => write!(
                f,
                "interface missing: workload {workload} has no host interface {interface} (its container lives; the runtime must re-add it)"
            ),
        }
    }
}
