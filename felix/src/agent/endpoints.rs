//! The CNI side's [`Endpoints`](crate::cni::Endpoints) over `WorkloadEndpoint` resources:
//! one per pod interface, named `<node>-<pod>-<ifname>-<hash>`, in the pod's namespace
//! (`default` when the runtime gave none).
//!
//! felix is the only writer of its node's endpoints, so it keeps them in memory as well
//! (loaded at start): a lookup during ADD costs no datastore round trip. The datastore
//! copy is what the rest of the cluster (policy on other nodes, `ipam check`, GC) reads.
//! What the resource has no field for (CNI network name, netns path, MTU) rides in
//! annotations. In Kubernetes mode a [`Decorate`] fills what comes from the Pod (labels,
//! named ports) just before each write.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use twill_api::resources::{WorkloadEndpoint, WorkloadEndpointSpec};
use twill_api::{Datastore, DatastoreError};

use crate::cni::{Endpoint, EndpointKey, Endpoints, StoreError};

const NETWORK: &str = "twill.dev/network";
const NETNS: &str = "twill.dev/netns";
const MTU: &str = "twill.dev/mtu";

/// The namespace of endpoints whose runtime gave no pod namespace.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Fills what a `WorkloadEndpoint` takes from outside the CNI request, just before it is
/// written (Kubernetes mode: the Pod's labels and named ports, `agent::kube`).
#[async_trait]
pub trait Decorate: Send + Sync {
    async fn decorate(&self, wep: &mut WorkloadEndpoint) -> Result<(), StoreError>;
}

/// `WorkloadEndpoint`s of one node.
pub struct EndpointStore {
    ds: Datastore,
    node: String,
    local: Mutex<BTreeMap<EndpointKey, Endpoint>>,
    decorator: Option<Arc<dyn Decorate>>,
}

impl std::fmt::Debug for EndpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EndpointStore({})", self.node)
    }
}

fn sanitize(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped.trim_matches(|c| c == '-' || c == '.').to_string()
}

/// The resource name of an endpoint: readable, unique per CNI triple, a valid name.
pub fn endpoint_name(node: &str, pod: &str, key: &EndpointKey) -> String {
    let digest = Sha256::digest(format!(
        "{}/{}/{}",
        key.network, key.container_id, key.ifname
    ));
    let hash = hex::encode(&digest[..5]);
    let who = if pod.is_empty() {
        sanitize(&key.container_id.chars().take(12).collect::<String>())
    } else {
        sanitize(pod)
    };
    let mut parts: Vec<String> = [sanitize(node), who, sanitize(&key.ifname)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.chars().take(60).collect())
        .collect();
    parts.push(hash);
    parts.join("-")
}

/// The pod's namespace in the datastore.
pub fn namespace_of(ep: &Endpoint) -> &str {
    if ep.pod_namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        &ep.pod_namespace
    }
}

/// The resource for `ep` on `node`.
pub fn to_resource(node: &str, ep: &Endpoint) -> WorkloadEndpoint {
    let annotations = BTreeMap::from([
        (NETWORK.to_string(), ep.key.network.clone()),
        (NETNS.to_string(), ep.netns.clone()),
        (MTU.to_string(), ep.mtu.to_string()),
    ]);
    let ip_networks = ep
        .ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        })
        .collect();
    WorkloadEndpoint {
        metadata: ObjectMeta {
            name: Some(endpoint_name(node, &ep.pod_name, &ep.key)),
            namespace: Some(namespace_of(ep).to_string()),
            labels: (!ep.labels.is_empty()).then(|| ep.labels.clone()),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: WorkloadEndpointSpec {
            orchestrator: Some(if ep.pod_name.is_empty() { "cni" } else { "k8s" }.to_string()),
            node: node.to_string(),
            pod: (!ep.pod_name.is_empty()).then(|| ep.pod_name.clone()),
            endpoint: Some(ep.key.ifname.clone()),
            container_id: Some(ep.key.container_id.clone()),
            interface_name: Some(ep.host_ifname.clone()),
            mac: Some(ep.pod_mac.clone()),
            ip_networks,
            ipam_handle_id: Some(ep.key.ipam_handle()),
            ..Default::default()
        },
    }
}

/// The endpoint a resource records, if it is one of felix's (it carries the annotations).
pub fn from_resource(wep: &WorkloadEndpoint) -> Option<Endpoint> {
    let ann = wep.metadata.annotations.as_ref()?;
    let network = ann.get(NETWORK)?.clone();
    let ips = wep
        .spec
        .ip_networks
        .iter()
        .filter_map(|n| n.parse::<ipnet::IpNet>().ok().map(|n| n.addr()))
        .collect();
    Some(Endpoint {
        key: EndpointKey {
            network,
            container_id: wep.spec.container_id.clone()?,
            ifname: wep.spec.endpoint.clone()?,
        },
        netns: ann.get(NETNS).cloned().unwrap_or_default(),
        pod_namespace: if wep.spec.pod.is_some() {
            wep.metadata.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        },
        pod_name: wep.spec.pod.clone().unwrap_or_default(),
        labels: wep.metadata.labels.clone().unwrap_or_default(),
        host_ifname: wep.spec.interface_name.clone().unwrap_or_default(),
        pod_mac: wep.spec.mac.clone().unwrap_or_default(),
        ips,
        mtu: ann.get(MTU).and_then(|m| m.parse().ok()).unwrap_or(0),
    })
}

/// Replaces the stored endpoint with `wep`. The update names the resourceVersion it
/// replaces, read just before (the API server refuses a custom resource's update without
/// one: 422); a conflict (written meanwhile) reads again, a few times.
pub async fn replace(ds: &Datastore, wep: &mut WorkloadEndpoint) -> Result<(), DatastoreError> {
    let namespace = wep.metadata.namespace.clone();
    let name = wep.metadata.name.clone().unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current: WorkloadEndpoint = ds.get(namespace.as_deref(), &name).await?;
        wep.metadata.resource_version = current.metadata.resource_version;
        match ds.update(&*wep).await {
            Err(DatastoreError::Conflict { .. }) if attempt < 3 => continue,
            other => return other.map(|_| ()),
        }
    }
}

fn store_err(e: DatastoreError) -> StoreError {
    StoreError(e.to_string())
}

impl EndpointStore {
    /// Loads this node's endpoints from the datastore.
    pub async fn load(ds: Datastore, node: String) -> Result<EndpointStore, StoreError> {
        let all = ds.list::<WorkloadEndpoint>(None).await.map_err(store_err)?;
        let local = all
            .items
            .iter()
            .filter(|w| w.spec.node == node)
            .filter_map(from_resource)
            .map(|ep| (ep.key.clone(), ep))
            .collect();
        Ok(EndpointStore {
            ds,
            node,
            local: Mutex::new(local),
            decorator: None,
        })
    }

    /// Runs `decorator` on every endpoint before it is written.
    pub fn with_decorator(mut self, decorator: Option<Arc<dyn Decorate>>) -> Self {
        self.decorator = decorator;
        self
    }

    /// Every local endpoint (all networks).
    pub async fn all(&self) -> Vec<Endpoint> {
        self.local.lock().await.values().cloned().collect()
    }
}

#[async_trait]
impl Endpoints for EndpointStore {
    async fn put(&self, ep: &Endpoint) -> Result<(), StoreError> {
        let mut object = to_resource(&self.node, ep);
        let mut ep = ep.clone();
        if let Some(decorator) = &self.decorator {
            decorator.decorate(&mut object).await?;
            ep.labels = object.metadata.labels.clone().unwrap_or_default();
        }
        match self.ds.create(&object).await {
            Ok(_) => {}
            Err(DatastoreError::AlreadyExists { .. }) => {
                // A repeated ADD: replace what is stored (felix is this endpoint's writer).
                replace(&self.ds, &mut object).await.map_err(store_err)?;
            }
            Err(e) => return Err(store_err(e)),
        }
        self.local.lock().await.insert(ep.key.clone(), ep);
        Ok(())
    }

    async fn get(&self, key: &EndpointKey) -> Result<Option<Endpoint>, StoreError> {
        Ok(self.local.lock().await.get(key).cloned())
    }

    async fn delete(&self, key: &EndpointKey) -> Result<(), StoreError> {
        let known = self.local.lock().await.get(key).cloned();
        if let Some(ep) = known {
            let name = endpoint_name(&self.node, &ep.pod_name, key);
            match self
                .ds
                .delete::<WorkloadEndpoint>(Some(namespace_of(&ep)), &name, None)
                .await
            {
                Ok(_) | Err(DatastoreError::NotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        self.local.lock().await.remove(key);
        Ok(())
    }

    async fn list(&self, network: &str) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self
            .local
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

    fn ep() -> Endpoint {
        Endpoint {
            key: EndpointKey {
                network: "twill".into(),
                container_id: "ABC_0123456789abcdef".into(),
                ifname: "eth0".into(),
            },
            netns: "/var/run/netns/p1".into(),
            pod_namespace: "shop".into(),
            pod_name: "web-1".into(),
            labels: BTreeMap::from([("app".into(), "web".into())]),
            host_ifname: "tw0123456789a".into(),
            pod_mac: "aa:bb:cc:dd:ee:ff".into(),
            ips: vec!["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            mtu: 1450,
        }
    }

    #[test]
    fn resource_round_trips_and_passes_validation() {
        let e = ep();
        let r = to_resource("node-1", &e);
        assert_eq!(r.metadata.namespace.as_deref(), Some("shop"));
        assert!(
            r.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("node-1-web-1-eth0-")
        );
        assert_eq!(r.spec.ip_networks, ["10.244.1.5/32", "fd00::5/128"]);
        let value = serde_json::to_value(&r).unwrap();
        (<WorkloadEndpoint as twill_api::Resource>::kind_info().check)(value).unwrap();
        assert_eq!(from_resource(&r), Some(e));
    }

    #[test]
    fn names_are_valid_and_distinct_per_attachment() {
        let mut e = ep();
        e.pod_name.clear();
        let a = endpoint_name("Node_1", "", &e.key);
        assert!(a.starts_with("node-1-abc-01234567"), "{a}");
        e.key.ifname = "net1".into();
        let b = endpoint_name("Node_1", "", &e.key);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
