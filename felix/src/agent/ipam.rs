//! The CNI side's [`Ipam`](crate::cni::Ipam) over `twill-ipam`: allocations for this node
//! from its blocks (claiming or borrowing as the allocator decides), recorded under the
//! CNI handle, with the pod's namespace and name as attributes.
//!
//! Which families a pod gets follows the enabled pools whose `nodeSelector` selects this
//! node: IPv4, IPv6 or both.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use twill_api::Datastore;
use twill_api::resources::{IPAMBlock, IPPool, Node};
use twill_ipam::allocator::{Ipam as Allocator, IpamError as AllocError, Request, Settings};
use twill_ipam::model::{block_from_spec, pool_from_api};
use twill_ipam::net::Family;

use crate::cni::{AllocateRequest, Ipam, IpamError};

/// Allocation for one node over the datastore.
pub struct NodeIpam {
    node: String,
    allocator: Arc<Allocator>,
    /// The families this node's pools serve, kept current by the reconciler from its
    /// watches (`None` until the first snapshot: then they are read from the datastore).
    families: watch::Receiver<Option<(bool, bool)>>,
}

impl std::fmt::Debug for NodeIpam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeIpam({})", self.node)
    }
}

fn map_err(e: AllocError) -> IpamError {
    match e {
        AllocError::Exhausted(x) => IpamError::Exhausted(x.to_string()),
        e if e.is_transient() => IpamError::Unavailable(e.to_string()),
        AllocError::Datastore(d) => IpamError::Unavailable(d.to_string()),
        e => IpamError::Invalid(e.to_string()),
    }
}

/// The families (v4, v6) the enabled pools that select a node with `labels` serve.
pub fn families_for(settings: &Settings, labels: &BTreeMap<String, String>) -> (bool, bool) {
    let mut v4 = false;
    let mut v6 = false;
    for pool in &settings.pools {
        match pool.family() {
            Family::V4 => v4 |= pool.usable_by(Family::V4, labels),
            Family::V6 => v6 |= pool.usable_by(Family::V6, labels),
        }
    }
    (v4, v6)
}

/// The families the pools in a snapshot serve for a node with `labels`.
pub fn families_from<'a>(
    pools: impl IntoIterator<Item = &'a IPPool>,
    labels: &BTreeMap<String, String>,
) -> (bool, bool) {
    let settings = Settings {
        pools: pools
            .into_iter()
            .filter_map(|p| pool_from_api(p).ok())
            .collect(),
        ..Settings::default()
    };
    families_for(&settings, labels)
}

impl NodeIpam {
    pub fn new(
        node: String,
        allocator: Arc<Allocator>,
        families: watch::Receiver<Option<(bool, bool)>>,
    ) -> NodeIpam {
        NodeIpam {
            node,
            allocator,
            families,
        }
    }

    fn ds(&self) -> &Datastore {
        self.allocator.datastore()
    }

    async fn families(&self) -> Result<(bool, bool), IpamError> {
        if let Some(f) = *self.families.borrow() {
            return Ok(f);
        }
        let settings = Settings::load(self.ds()).await.map_err(map_err)?;
        let labels = match self.ds().get::<Node>(None, &self.node).await {
            Ok(n) => n.metadata.labels.unwrap_or_default(),
            Err(twill_api::DatastoreError::NotFound { .. }) => BTreeMap::new(),
            Err(e) => return Err(IpamError::Unavailable(e.to_string())),
        };
        Ok(families_for(&settings, &labels))
    }
}

#[async_trait]
impl Ipam for NodeIpam {
    async fn allocate(&self, req: &AllocateRequest) -> Result<Vec<IpAddr>, IpamError> {
        let (v4, v6) = self.families().await?;
        if !v4 && !v6 {
            return Err(IpamError::Invalid(format!(
                "no enabled IP pool selects node {}",
                self.node
            )));
        }
        let mut attrs = BTreeMap::new();
        if !req.pod_namespace.is_empty() {
            attrs.insert("namespace".to_string(), req.pod_namespace.clone());
        }
        if !req.pod_name.is_empty() {
            attrs.insert("pod".to_string(), req.pod_name.clone());
        }
        attrs.insert("container".to_string(), req.container_id.clone());
        let request = Request {
            handle: req.handle.clone(),
            node: self.node.clone(),
            attrs,
            v4,
            v6,
        };
        let got = self.allocator.allocate(&request).await.map_err(map_err)?;
        Ok(got.iter().map(|a| a.addr).collect())
    }

    async fn release(&self, handle: &str) -> Result<(), IpamError> {
        self.allocator
            .release_handle(handle)
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn handles(&self, prefix: &str) -> Result<Vec<String>, IpamError> {
        let blocks = self
            .ds()
            .list::<IPAMBlock>(None)
            .await
            .map_err(|e| IpamError::Unavailable(e.to_string()))?;
        let mut out: Vec<String> = Vec::new();
        for object in &blocks.items {
            let Ok(block) = block_from_spec(&object.spec) else {
                continue;
            };
            for (_, alloc) in block.used_addrs() {
                if alloc.handle.starts_with(prefix)
                    && alloc.attrs.get("node").map(String::as_str) == Some(self.node.as_str())
                    && !out.contains(&alloc.handle)
                {
                    out.push(alloc.handle.clone());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn ready(&self) -> Result<(), IpamError> {
        let (v4, v6) = self.families().await?;
        if v4 || v6 {
            Ok(())
        } else {
            Err(IpamError::Invalid(format!(
                "no enabled IP pool selects node {}",
                self.node
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use twill_api::selector::Selector;
    use twill_ipam::plan::Pool;

    use super::*;

    fn pool(cidr: &str, selector: Option<&str>, disabled: bool) -> Pool {
        Pool {
            name: cidr.replace(['/', '.', ':'], "-"),
            cidr: cidr.parse().unwrap(),
            block_len: if cidr.contains(':') { 122 } else { 26 },
            node_selector: Selector::parse(selector.unwrap_or("all()")).unwrap(),
            disabled,
            load_balancer: false,
        }
    }

    #[test]
    fn families_follow_the_pools_that_select_the_node() {
        let labels: BTreeMap<String, String> = [("rack".to_string(), "a".to_string())].into();
        let mut s = Settings::default();
        assert_eq!(families_for(&s, &labels), (false, false));
        s.pools = vec![pool("10.244.0.0/16", None, false)];
        assert_eq!(families_for(&s, &labels), (true, false));
        s.pools
            .push(pool("fd00:10:244::/56", Some("rack == 'b'"), false));
        assert_eq!(families_for(&s, &labels), (true, false));
        s.pools
            .push(pool("fd00:10:245::/56", Some("rack == 'a'"), false));
        assert_eq!(families_for(&s, &labels), (true, true));
        s.pools[0].disabled = true;
        assert_eq!(families_for(&s, &labels), (false, true));
    }
}
