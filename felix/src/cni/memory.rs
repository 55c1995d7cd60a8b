//! In-memory [`Ipam`] and [`Endpoints`]: test doubles, and a way to run the CNI service
//! without a datastore. Nothing survives a restart; never use them in a real cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::Mutex;

use super::traits::{
    AllocateRequest, Endpoint, EndpointKey, Endpoints, Ipam, IpamError, StoreError,
};

#[derive(Debug, Default)]
struct IpamState {
    by_handle: BTreeMap<String, Vec<IpAddr>>,
    used: BTreeSet<IpAddr>,
}

/// Hands out addresses from fixed blocks (one address per block, i.e. per family when
/// given one IPv4 and one IPv6 block), lowest free first, skipping the block's first address.
#[derive(Debug)]
pub struct MemoryIpam {
    blocks: Vec<IpNet>,
    state: Mutex<IpamState>,
}

impl MemoryIpam {
    pub fn new(blocks: Vec<IpNet>) -> MemoryIpam {
        MemoryIpam {
            blocks,
            state: Mutex::new(IpamState::default()),
        }
    }

    /// The blocks served (felix holds them with blackhole routes).
    pub fn blocks(&self) -> &[IpNet] {
        &self.blocks
    }

    /// Every address in use.
    pub async fn used(&self) -> Vec<IpAddr> {
        self.state.lock().await.used.iter().copied().collect()
    }
}

#[async_trait]
impl Ipam for MemoryIpam {
    async fn allocate(&self, req: &AllocateRequest) -> Result<Vec<IpAddr>, IpamError> {
        let mut st = self.state.lock().await;
        if let Some(existing) = st.by_handle.get(&req.handle) {
            return Ok(existing.clone());
        }
        let mut got = Vec::new();
        for block in &self.blocks {
            let free = block
                .hosts()
                .skip(1)
                .take(65536)
                .find(|a| !st.used.contains(a) && !got.contains(a));
            match free {
                Some(a) => got.push(a),
                None => return Err(IpamError::Exhausted(format!("block {block} is full"))),
            }
        }
        if got.is_empty() {
            return Err(IpamError::Invalid("no block configured".into()));
        }
        st.used.extend(got.iter().copied());
        st.by_handle.insert(req.handle.clone(), got.clone());
        Ok(got)
    }

    async fn release(&self, handle: &str) -> Result<(), IpamError> {
        let mut st = self.state.lock().await;
        if let Some(addrs) = st.by_handle.remove(handle) {
            for a in addrs {
                st.used.remove(&a);
            }
        }
        Ok(())
    }

    async fn handles(&self, prefix: &str) -> Result<Vec<String>, IpamError> {
        let st = self.state.lock().await;
        Ok(st
            .by_handle
            .keys()
            .filter(|h| h.starts_with(prefix))
            .cloned()
            .collect())
    }

    async fn ready(&self) -> Result<(), IpamError> {
        if self.blocks.is_empty() {
            Err(IpamError::Invalid("no block configured".into()))
        } else {
            Ok(())
        }
    }
}

/// Endpoints in a map.
#[derive(Debug, Default)]
pub struct MemoryEndpoints {
    map: Mutex<BTreeMap<EndpointKey, Endpoint>>,
}

impl MemoryEndpoints {
    pub fn new() -> MemoryEndpoints {
        MemoryEndpoints::default()
    }
}

#[async_trait]
impl Endpoints for MemoryEndpoints {
    async fn put(&self, ep: &Endpoint) -> Result<(), StoreError> {
        self.map.lock().await.insert(ep.key.clone(), ep.clone());
        Ok(())
    }

    async fn get(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        Ok(self.map.lock().await.get(key).cloned())
    }

    async fn delete(&self, key: &EndpointKey) -> Result<(), StoreError> {
        self.map.lock().await.remove(key);
        Ok(())
    }

    async fn list(&self, network: &str) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .map
            .lock()
            .await
            .values()
            .filter(|e| e.key.network == network)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(handle: &str) -> AllocateRequest {
        AllocateRequest {
            handle: handle.into(),
            container_id: "c".into(),
            ifname: "eth0".into(),
            pod_namespace: String::new(),
            pod_name: String::new(),
        }
    }

    #[tokio::test]
    async fn allocation_is_idempotent_per_handle_and_unique_across_handles() {
        // The /126 has three usable addresses once its first is skipped; the /29 has five.
        let ipam = MemoryIpam::new(vec![
            "10.244.0.0/29".parse().unwrap(),
            "fd00:1::/126".parse().unwrap(),
        ]);
        let a = ipam.allocate(&req("n.a")).await.unwrap();
        assert_eq!(a, ipam.allocate(&req("n.a")).await.unwrap());
        assert_eq!(a.len(), 2);
        let b = ipam.allocate(&req("n.b")).await.unwrap();
        assert!(a.iter().all(|x| !b.contains(x)));
        ipam.allocate(&req("n.c")).await.unwrap();
        assert!(matches!(
            ipam.allocate(&req("n.d")).await,
            Err(IpamError::Exhausted(_))
        ));
        ipam.release("n.a").await.unwrap();
        ipam.release("n.a").await.unwrap();
        assert_eq!(ipam.allocate(&req("n.d")).await.unwrap(), a);
        assert_eq!(ipam.handles("n.").await.unwrap().len(), 3);
    }
}
