//! What the policy engine is computed from: a snapshot of the cluster as felix sees it
//! (every workload endpoint, namespace, policy and pool) plus the local node's name.
//!
//! Objects are held behind `Arc`s in maps keyed by their names, so that felix can keep one
//! `PolicyInputs` alive, swap the entry of an object a watch event changed, and hand the
//! whole snapshot to the engine on every change: the engine finds what changed by pointer
//! comparison first, so an unchanged cluster of thousands of objects costs microseconds.

use std::collections::BTreeMap;
use std::sync::Arc;

use twill_api::resources::native::{Namespace, NetworkPolicy};
use twill_api::resources::{GlobalNetworkPolicy, IPPool, WorkloadEndpoint};

use super::ir::HostPolicy;

/// `(namespace, name)` of a namespaced object.
pub type ObjectKey = (String, String);

/// A snapshot of everything the policy of one node depends on.
#[derive(Clone, Debug, Default)]
pub struct PolicyInputs {
    /// This node's name: endpoints whose `spec.node` equals it are the local ones.
    pub node_name: String,
    /// Every workload endpoint of the cluster (remote ones feed selector memberships).
    pub endpoints: BTreeMap<ObjectKey, Arc<WorkloadEndpoint>>,
    /// Namespaces by name. A namespace without an object still has the automatic label
    /// `kubernetes.io/metadata.name`.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// Kubernetes `NetworkPolicy` objects.
    pub network_policies: BTreeMap<ObjectKey, Arc<NetworkPolicy>>,
    /// Twill `GlobalNetworkPolicy` objects by name.
    pub global_policies: BTreeMap<String, Arc<GlobalNetworkPolicy>>,
    /// IP pools by name (their `cidr` and `natOutgoing` matter here).
    pub pools: BTreeMap<String, Arc<IPPool>>,
    /// The host-facing policy (felix's configuration, not a datastore object).
    pub host: HostPolicy,
}

impl PolicyInputs {
    /// An empty snapshot for `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        PolicyInputs {
            node_name: node_name.into(),
            ..Default::default()
        }
    }

    /// Inserts or replaces an endpoint (keyed by its namespace and name).
    pub fn upsert_endpoint(&mut self, wep: WorkloadEndpoint) {
        let key = (
            wep.metadata.namespace.clone().unwrap_or_default(),
            wep.metadata.name.clone().unwrap_or_default(),
        );
        self.endpoints.insert(key, Arc::new(wep));
    }

    /// Inserts or replaces a namespace.
    pub fn upsert_namespace(&mut self, ns: Namespace) {
        let key = ns.metadata.name.clone().unwrap_or_default();
        self.namespaces.insert(key, Arc::new(ns));
    }

    /// Inserts or replaces a Kubernetes network policy.
    pub fn upsert_network_policy(&mut self, np: NetworkPolicy) {
        let key = (
            np.metadata.namespace.clone().unwrap_or_default(),
            np.metadata.name.clone().unwrap_or_default(),
        );
        self.network_policies.insert(key, Arc::new(np));
    }

    /// Inserts or replaces a global network policy.
    pub fn upsert_global_policy(&mut self, gnp: GlobalNetworkPolicy) {
        let key = gnp.metadata.name.clone().unwrap_or_default();
        self.global_policies.insert(key, Arc::new(gnp));
    }

    /// Inserts or replaces an IP pool.
    pub fn upsert_pool(&mut self, pool: IPPool) {
        let key = pool.metadata.name.clone().unwrap_or_default();
        self.pools.insert(key, Arc::new(pool));
    }
}
