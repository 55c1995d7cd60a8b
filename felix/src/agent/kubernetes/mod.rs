//! felix's Kubernetes mode (`--datastore kubernetes`): what it does beyond watching
//! resources through the `Datastore`, which works the same in both modes.
//! - [`node_sync`]: Twill's `Node` follows this node's Kubernetes Node (labels, addresses,
//!   an owner reference);
//! - [`pods`]: this node's Pods decorate the `WorkloadEndpoint`s felix writes at CNI ADD
//!   (labels, named ports, service account, read from the Pod rather than CNI_ARGS) and
//!   keep them in step afterwards;
//! - [`secrets`]: the TCP-MD5 passwords `BGPPeer`s name in Secrets.
//!
//! The client comes from the datastore (`--kubeconfig` / `KUBECONFIG`, else the in-cluster
//! service account, whose token kube-rs re-reads from its file at least once a minute, so
//! projected tokens that the kubelet rotates keep working). None of this runs in etcd mode.

pub mod node_sync;
pub mod pods;
pub mod secrets;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use twill_api::Datastore;
use twill_bgpd::task::TaskGuard;

use crate::agent::endpoints::{Decorate, EndpointStore};
use crate::config::Config;
use node_sync::Fixed;
use pods::PodSync;

/// Kubernetes mode's parts of felix.
pub struct KubeMode {
    client: kube::Client,
    ds: Datastore,
    node: String,
    given: (Option<Ipv4Addr>, Option<Ipv6Addr>),
    pods: PodSync,
}

impl std::fmt::Debug for KubeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeMode({})", self.node)
    }
}

impl KubeMode {
    /// The parts, when the datastore is a Kubernetes API server (`None` with etcd).
    pub fn new(ds: &Datastore, cfg: &Config) -> Option<KubeMode> {
        let client = ds.kube_client()?;
        Some(KubeMode {
            pods: PodSync::new(client.clone(), ds.clone(), cfg.node_name.clone()),
            client,
            ds: ds.clone(),
            node: cfg.node_name.clone(),
            given: (cfg.bgp_address, cfg.bgp_address_v6),
        })
    }

    fn fixed(&self) -> Fixed {
        Fixed {
            v4: self.given.0.is_some(),
            v6: self.given.1.is_some(),
        }
    }

    /// The addresses to look for on the host: the flags', else the Kubernetes Node's
    /// `InternalIP`s (else none: felix detects them from the default route).
    pub async fn addresses(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let (k4, k6) = match node_sync::get(&self.client, &self.node).await {
            Ok(Some(node)) => node_sync::internal_ips(&node),
            Ok(None) => {
                tracing::warn!(node = %self.node, "no Kubernetes Node of this name; detecting addresses");
                (None, None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the Kubernetes Node; detecting addresses");
                (None, None)
            }
        };
        (self.given.0.or(k4), self.given.1.or(k6))
    }

    /// Reads the BGP password Secrets.
    pub fn secrets(&self) -> secrets::SecretReader {
        secrets::SecretReader::new(self.client.clone())
    }

    /// What decorates the endpoints felix writes.
    pub fn decorator(&self) -> Arc<dyn Decorate> {
        Arc::new(self.pods.clone())
    }

    /// Brings the Twill Node in step once (so the first snapshot's pools and peers see the
    /// Kubernetes Node's labels), then keeps it and the endpoints in `store` in step until
    /// the returned tasks are dropped.
    pub async fn start(
        &self,
        handle: &rtnetlink::Handle,
        store: Arc<EndpointStore>,
    ) -> Vec<TaskGuard> {
        match node_sync::get(&self.client, &self.node).await {
            Ok(Some(kube)) => {
                if let Err(e) =
                    node_sync::apply(&self.ds, handle, &kube, self.fixed(), self.given).await
                {
                    tracing::warn!(error = %e, "cannot bring the Node in step yet");
                }
            }
            Ok(None) => tracing::warn!(node = %self.node, "no Kubernetes Node of this name yet"),
            Err(e) => tracing::warn!(error = %e, "cannot read the Kubernetes Node yet"),
        }
        vec![
            TaskGuard::spawn(node_sync::run(
                self.client.clone(),
                self.ds.clone(),
                handle.clone(),
                self.node.clone(),
                self.fixed(),
                self.given,
            )),
            TaskGuard::spawn(self.pods.clone().run(store)),
        ]
    }
}
