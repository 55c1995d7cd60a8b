//! What the CNI flow needs from the rest of felix, as two small traits: address
//! management ([`Ipam`]) and the record of local workload endpoints ([`Endpoints`]).
//!
//! The real implementations (twill-ipam over the datastore, `WorkloadEndpoint` resources)
//! plug in here; `memory` has in-process doubles for tests and for running without a
//! datastore. Implementations must be idempotent where the docs say so: the runtime
//! retries, and DEL must succeed when things are already gone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use async_trait::async_trait;

/// One allocation request for a pod attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// `<network>.<containerID>`: every address of the attachment is recorded under it.
    pub handle: String,
    pub container_id: String,
    pub ifname: String,
    /// Empty when the runtime is not Kubernetes.
    pub pod_namespace: String,
    pub pod_name: String,
}

/// Why IPAM failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No free address right now (pool exhausted, no block to claim or borrow): retry later.
    #[error("no free address: {0}")]
    Exhausted(String),
    /// The datastore cannot be reached or refused a write (CAS conflicts exhausted).
    #[error("IPAM unavailable: {0}")]
    Unavailable(String),
    /// The request cannot succeed (e.g. no pool selects this node).
    #[error("IPAM: {0}")]
    Invalid(String),
}

/// Address management for this node.
#[async_trait]
pub trait Ipam: Send + Sync {
    /// Allocates one address per address family this node's pools serve, recorded under
    /// `req.handle`. Idempotent: when the handle already holds addresses, returns them.
    async fn allocate(&self, req: &AllocateRequest) -> Result<Vec<IpAddr>, IpamError>;
    /// Releases every address under `handle`; succeeds when there is none.
    async fn release(&self, handle: &str) -> Result<(), IpamError>;
    /// The handles (of this node) that start with `prefix` (GC uses `<network>.`).
    async fn handles(&self, prefix: &str) -> Result<Vec<String>, IpamError>;
    /// Ok when an ADD could be served now (CNI STATUS).
    async fn ready(&self) -> Result<(), IpamError>;
}

/// An attachment's identity: the CNI triple (network, container, interface).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl EndpointKey {
    /// The workload id the host veth name is hashed from.
    pub fn workload_id(&self) -> String {
        format!("{}/{}", self.container_id, self.ifname)
    }

    /// The IPAM handle (`<network>.<containerID>`, docs/ARCHITECTURE.md, data flow step 4).
    pub fn ipam_handle(&self) -> String {
        format!("{}.{}", self.network, self.container_id)
    }
}

/// A local workload endpoint, as recorded after a successful ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub key: EndpointKey,
    pub netns: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The workload's labels (policy selects on them); in etcd mode they come from the
    /// CNI_ARGS key [`LABELS_ARG`](crate::cni::LABELS_ARG).
    pub labels: BTreeMap<String, String>,
    pub host_ifname: String,
    pub pod_mac: String,
    pub ips: Vec<IpAddr>,
    pub mtu: u32,
}

/// Why the endpoint store failed.
#[derive(Debug, thiserror::Error)]
#[error("endpoint store: {0}")]
pub struct StoreError(pub String);

/// The record of this node's workload endpoints (`WorkloadEndpoint` resources).
#[async_trait]
pub trait Endpoints: Send + Sync {
    /// Creates or replaces the record.
    async fn put(&self, ep: &Endpoint) -> Result<(), StoreError>;
    async fn get(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError>;
    /// Removes the record; succeeds when there is none.
    async fn delete(&self, key: &EndpointKey) -> Result<(), StoreError>;
    /// Every endpoint of `network` on this node.
    async fn list(&self, network: &str) -> Result<Vec<Endpoint>, StoreError>;
}
