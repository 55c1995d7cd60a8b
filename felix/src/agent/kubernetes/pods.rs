//! This node's Pods (a watch with the field selector `spec.nodeName=<node>`) and the local
//! `WorkloadEndpoint`s kept in step with them: the Pod's labels become the endpoint's
//! `metadata.labels`, its named `containerPort`s the endpoint's `spec.ports`, its service
//! account `spec.serviceAccountName`. Other nodes' policy sees a relabelled pod through
//! their watch of the endpoints.
//!
//! At CNI ADD the endpoint is decorated from the cache (or a GET of the Pod when the watch
//! has not seen it yet); afterwards every Pod change rewrites the endpoints whose written
//! state differs. This module never creates or deletes an endpoint and never releases an
//! address: a Pod that is gone leaves its endpoint and allocation to CNI DEL and to the
//! IPAM controller's garbage collection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::RwLock;
use twill_api::resources::{EndpointPort, WorkloadEndpoint};
use twill_api::{Datastore, DatastoreError};

use crate::agent::endpoints::{Decorate, EndpointStore, namespace_of, replace, to_resource};
use crate::cni::StoreError;

/// What an endpoint takes from its Pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<EndpointPort>,
    pub service_account: Option<String>,
}

impl PodMeta {
    /// Reads a Pod: its labels, its containers' named ports, its service account.
    pub fn of(pod: &Pod) -> PodMeta {
        let ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                Some(EndpointPort {
                    name: p.name.clone().filter(|n| !n.is_empty())?,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: u16::try_from(p.container_port).ok().filter(|p| *p > 0)?,
                })
            })
            .collect();
        PodMeta {
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ports,
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty()),
        }
    }

    /// What an endpoint as stored says its Pod is.
    pub fn of_endpoint(wep: &WorkloadEndpoint) -> PodMeta {
        PodMeta {
            labels: wep.metadata.labels.clone().unwrap_or_default(),
            ports: wep.spec.ports.clone(),
            service_account: wep.spec.service_account_name.clone(),
        }
    }

    /// Writes this into an endpoint.
    pub fn apply(&self, wep: &mut WorkloadEndpoint) {
        wep.metadata.labels = (!self.labels.is_empty()).then(|| self.labels.clone());
        wep.spec.ports = self.ports.clone();
        wep.spec.service_account_name = self.service_account.clone();
    }
}

/// (namespace, name).
type PodKey = (String, String);

/// The Pods of this node as last seen, and what each local endpoint was last written with
/// (keyed by the endpoint's namespace and resource name).
#[derive(Default)]
struct Shared {
    pods: BTreeMap<PodKey, PodMeta>,
    written: BTreeMap<(String, String), PodMeta>,
}

/// This node's Pods, for decorating endpoints and keeping them in step.
#[derive(Clone)]
pub struct PodSync {
    client: kube::Client,
    ds: Datastore,
    node: String,
    shared: Arc<RwLock<Shared>>,
    retry: Duration,
}

impl std::fmt::Debug for PodSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PodSync({})", self.node)
    }
}

fn wep_key(wep: &WorkloadEndpoint) -> (String, String) {
    (
        wep.metadata.namespace.clone().unwrap_or_default(),
        wep.metadata.name.clone().unwrap_or_default(),
    )
}

fn pod_key(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// How often endpoints that could not be written are retried (and drift is looked for).
pub const RETRY: Duration = Duration::from_secs(10);

impl PodSync {
    pub fn new(client: kube::Client, ds: Datastore, node: String) -> PodSync {
        PodSync {
            client,
            ds,
            node,
            shared: Arc::default(),
            retry: RETRY,
        }
    }

    /// Retries failed writes every `retry` instead of [`RETRY`].
    pub fn with_retry(mut self, retry: Duration) -> PodSync {
        self.retry = retry;
        self
    }

    /// The Pod's metadata: from the watch's cache, else read from the API server.
    async fn meta_of(&self, namespace: &str, name: &str) -> Result<PodMeta, StoreError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(meta) = self.shared.read().await.pods.get(&key) {
            return Ok(meta.clone());
        }
        let pod = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .get(name)
            .await
            .map_err(|e| StoreError(format!("reading Pod {namespace}/{name}: {e}")))?;
        Ok(PodMeta::of(&pod))
    }

    /// Rewrites the local endpoints (of one Pod, or all) whose written state differs from
    /// their Pod's. Never creates one: an endpoint deleted meanwhile stays deleted.
    async fn sync(&self, store: &EndpointStore, only: Option<&PodKey>) {
        for ep in store.all().await {
            if ep.pod_name.is_empty() {
                continue;
            }
            let pod = (namespace_of(&ep).to_string(), ep.pod_name.clone());
            if only.is_some_and(|o| *o != pod) {
                continue;
            }
            let mut wep = to_resource(&self.node, &ep);
            let key = wep_key(&wep);
            let (want, written) = {
                let shared = self.shared.read().await;
                let Some(want) = shared.pods.get(&pod).cloned() else {
                    // Not (or no longer) in the watch: nothing to bring it in step with.
                    continue;
                };
                (want, shared.written.get(&key).cloned())
            };
            if written.as_ref() == Some(&want) {
                continue;
            }
            want.apply(&mut wep);
            match replace(&self.ds, &mut wep).await {
                Ok(()) => {
                    tracing::info!(endpoint = %key.1, namespace = %key.0, "endpoint follows its Pod's labels and ports");
                    self.shared.write().await.written.insert(key, want);
                }
                Err(DatastoreError::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(endpoint = %key.1, error = %e, "cannot update endpoint; retrying");
                }
            }
        }
    }

    /// Learns what the stored endpoints of this node say (so a restart rewrites only
    /// those whose Pod changed meanwhile).
    async fn load_written(&self) -> Result<(), DatastoreError> {
        let list = self.ds.list::<WorkloadEndpoint>(None).await?;
        let mut shared = self.shared.write().await;
        for wep in list.items.iter().filter(|w| w.spec.node == self.node) {
            shared
                .written
                .insert(wep_key(wep), PodMeta::of_endpoint(wep));
        }
        Ok(())
    }

    /// Watches this node's Pods and keeps `store`'s endpoints in step, until dropped.
    /// The watch re-lists by itself after a 410 and backs off after errors.
    pub async fn run(self, store: Arc<EndpointStore>) {
        if let Err(e) = self.load_written().await {
            tracing::warn!(error = %e, "cannot list endpoints; every endpoint will be rewritten once");
        }
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        let mut events = watcher(Api::<Pod>::all(self.client.clone()), config)
            .default_backoff()
            .boxed();
        let mut listing: Option<BTreeMap<PodKey, PodMeta>> = None;
        let mut retry = tokio::time::interval(self.retry);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = retry.tick() => {
                    self.sync(&store, None).await;
                    continue;
                }
            };
            let Some(event) = event else {
                return;
            };
            match event {
                Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(pod)) => {
                    if let Some(listing) = listing.as_mut() {
                        listing.insert(pod_key(&pod), PodMeta::of(&pod));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(pods) = listing.take() {
                        tracing::debug!(pods = pods.len(), "listed this node's pods");
                        self.shared.write().await.pods = pods;
                    }
                    self.sync(&store, None).await;
                }
                Ok(watcher::Event::Apply(pod)) => {
                    let key = pod_key(&pod);
                    let meta = PodMeta::of(&pod);
                    let changed = {
                        let mut shared = self.shared.write().await;
                        shared.pods.insert(key.clone(), meta.clone()) != Some(meta)
                    };
                    if changed {
                        self.sync(&store, Some(&key)).await;
                    }
                }
                Ok(watcher::Event::Delete(pod)) => {
                    // The endpoint and its addresses stay: CNI DEL removes them, and the
                    // IPAM controller collects what a lost DEL leaves behind.
                    self.shared.write().await.pods.remove(&pod_key(&pod));
                }
                Err(e) => tracing::warn!(error = %e, "watch of this node's pods; retrying"),
            }
        }
    }
}

#[async_trait]
impl Decorate for PodSync {
    async fn decorate(&self, wep: &mut WorkloadEndpoint) -> Result<(), StoreError> {
        let Some(pod) = wep.spec.pod.clone() else {
            // Not a Kubernetes pod (no K8S_POD_NAME): keep what CNI_ARGS said.
            return Ok(());
        };
        let namespace = wep.metadata.namespace.clone().unwrap_or_default();
        let meta = self.meta_of(&namespace, &pod).await?;
        meta.apply(wep);
        self.shared.write().await.written.insert(wep_key(wep), meta);
        Ok(())
    }
}
