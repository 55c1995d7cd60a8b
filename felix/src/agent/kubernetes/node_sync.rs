//! Twill's `Node` kept in step with this node's Kubernetes Node (a watch with the field
//! selector `metadata.name=<node>`):
//! - labels: the Kubernetes Node's labels are the Twill Node's (pools' and peers'
//!   `nodeSelector`s select on them; `kubectl label node` is how an operator sets them);
//! - addresses: the Kubernetes Node's `InternalIP`s, unless `--bgp-address` /
//!   `--bgp-address-v6` fix them (the prefix length comes from the host's address);
//! - an owner reference to the Kubernetes Node, so deleting the Kubernetes Node deletes
//!   the Twill Node too (Kubernetes' garbage collector), and the IPAM controller then
//!   releases its blocks.
//!
//! Writes are compare-and-swap on the resourceVersion, retried on 409; nothing else of the
//! Twill Node (the AS override, the route-reflector cluster id) is ever touched.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node as KubeNode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use twill_api::resources::{Node, NodeBGPSpec};
use twill_api::{Datastore, DatastoreError};

use crate::agent::node::{self, NodeError, Uplink};

/// The `InternalIP`s of a Kubernetes Node, one per family (the first listed).
pub fn internal_ips(node: &KubeNode) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let ips: Vec<IpAddr> = node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect();
    let v4 = ips.iter().find_map(|ip| match ip {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    });
    let v6 = ips.iter().find_map(|ip| match ip {
        IpAddr::V6(a) => Some(*a),
        IpAddr::V4(_) => None,
    });
    (v4, v6)
}

/// The owner reference that ties a Twill Node to its Kubernetes Node.
pub fn owner_of(node: &KubeNode) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone()?,
        uid: node.metadata.uid.clone()?,
        ..Default::default()
    })
}

/// Which addresses the flags fixed (those are never replaced by the Kubernetes Node's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fixed {
    pub v4: bool,
    pub v6: bool,
}

/// What the Twill Node should say, given the Kubernetes Node and the uplink found for its
/// addresses. Returns `None` when `current` already says it.
pub fn desired(current: &Node, kube: &KubeNode, uplink: &Uplink, fixed: Fixed) -> Option<Node> {
    let mut next = current.clone();
    let labels = kube.metadata.labels.clone().unwrap_or_default();
    next.metadata.labels = Some(labels);
    if let Some(owner) = owner_of(kube) {
        let mut owners: Vec<OwnerReference> = next
            .metadata
            .owner_references
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|o| !(o.api_version == "v1" && o.kind == "Node"))
            .collect();
        owners.push(owner);
        next.metadata.owner_references = Some(owners);
    }
    let (v4, v6) = internal_ips(kube);
    let bgp = next.spec.bgp.get_or_insert_with(NodeBGPSpec::default);
    if !fixed.v4
        && v4.is_some()
        && let Some(a) = &uplink.v4
    {
        bgp.ipv4_address = Some(a.net.to_string());
    }
    if !fixed.v6
        && v6.is_some()
        && let Some(a) = &uplink.v6
    {
        bgp.ipv6_address = Some(a.net.to_string());
    }
    (next != *current).then_some(next)
}

/// Why the Twill Node could not be brought in step.
#[derive(Debug, thiserror::Error)]
pub enum NodeSyncError {
    #[error("reading Kubernetes Node {node}: {source}")]
    Kube { node: String, source: kube::Error },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("updating Node {node}: {source}")]
    Datastore {
        node: String,
        source: DatastoreError,
    },
}

/// Brings this node's Twill Node in step with `kube` (CAS, retried on conflicts;
/// re-registered when it was deleted). Returns whether it wrote.
pub async fn apply(
    ds: &Datastore,
    handle: &rtnetlink::Handle,
    kube: &KubeNode,
    fixed: Fixed,
    given: (Option<Ipv4Addr>, Option<Ipv6Addr>),
) -> Result<bool, NodeSyncError> {
    let name = kube.metadata.name.clone().unwrap_or_default();
    let (k4, k6) = internal_ips(kube);
    let want_v4 = if fixed.v4 { given.0 } else { k4.or(given.0) };
    let want_v6 = if fixed.v6 { given.1 } else { k6.or(given.1) };
    let uplink = node::detect(handle, want_v4, want_v6).await?;
    for _ in 0..10 {
        let current = match ds.get::<Node>(None, &name).await {
            Ok(n) => n,
            Err(DatastoreError::NotFound { .. }) => node::register(ds, &name, &uplink).await?,
            Err(source) => return Err(NodeSyncError::Datastore { node: name, source }),
        };
        let Some(next) = desired(&current, kube, &uplink, fixed) else {
            return Ok(false);
        };
        match ds.update(&next).await {
            Ok(_) => return Ok(true),
            Err(DatastoreError::Conflict { .. }) => continue,
            Err(source) => return Err(NodeSyncError::Datastore { node: name, source }),
        }
    }
    Err(NodeSyncError::Datastore {
        node: name.clone(),
        source: DatastoreError::Conflict {
            kind: "Node".into(),
            name,
            expected: "any (gave up after 10 conflicting writes)".into(),
        },
    })
}

/// Reads this node's Kubernetes Node once (`None` when it does not exist).
pub async fn get(client: &kube::Client, name: &str) -> Result<Option<KubeNode>, NodeSyncError> {
    Api::<KubeNode>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(|source| NodeSyncError::Kube {
            node: name.to_string(),
            source,
        })
}

/// How long a failed write waits before it is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Watches the Kubernetes Node `name` and applies each version of it (retrying a failed
/// write until it lands or a newer version replaces it), until dropped.
pub async fn run(
    client: kube::Client,
    ds: Datastore,
    handle: rtnetlink::Handle,
    name: String,
    fixed: Fixed,
    given: (Option<Ipv4Addr>, Option<Ipv6Addr>),
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(Api::<KubeNode>::all(client), config)
        .default_backoff()
        .boxed();
    let mut pending: Option<KubeNode> = None;
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let event = if pending.is_some() {
            tokio::select! {
                e = events.next() => Some(e),
                () = tokio::time::sleep(RETRY) => None,
            }
        } else {
            Some(events.next().await)
        };
        match event {
            Some(None) => return,
            Some(Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)))) => {
                pending = Some(n);
            }
            Some(Some(Ok(_))) | None => {}
            Some(Some(Err(e))) => {
                tracing::warn!(error = %e, "watch of this node's Kubernetes Node; retrying");
            }
        }
        let Some(kube) = &pending else {
            continue;
        };
        match apply(&ds, &handle, kube, fixed, given).await {
            Ok(wrote) => {
                let labels = kube.metadata.labels.clone().unwrap_or_default();
                if wrote && labels != last {
                    tracing::info!(?labels, "Node follows the Kubernetes Node");
                    last = labels;
                }
                pending = None;
            }
            Err(e) => tracing::warn!(error = %e, "cannot bring the Node in step; retrying"),
        }
    }
}
