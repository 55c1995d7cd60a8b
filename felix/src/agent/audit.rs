//! The node's inventory audit, run at start and on every resync: this node's address
//! allocations, its `WorkloadEndpoint`s and its `tw*` interfaces must tell one story.
//! A felix killed in the middle of an ADD can leave an allocation with no endpoint, or an
//! endpoint whose container is gone; nothing else on the node would ever reclaim them.
//!
//! - an endpoint whose container is gone (its network namespace file no longer exists in
//!   a directory that does) is torn down: interface, addresses, record;
//! - an allocation of this node that no endpoint owns is released;
//! - an endpoint whose container is alive but whose host interface is missing is
//!   reported (logged once, counted): only the runtime knows whether that container
//!   still matters. (`tw*` interfaces no endpoint owns are the reconciler's report.)
//!
//! It runs with the CNI lock held for writing, so no ADD is half done while it looks.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::RwLock;

use super::endpoints::EndpointStore;
use crate::cni::{Endpoint, Endpoints, Ipam};
use crate::dataplane::PodNetwork;
use crate::dataplane::names::host_veth_name;

/// What one audit found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AuditReport {
    /// Endpoints removed because their container is gone (`ns/name`-less keys as text).
    pub removed_endpoints: Vec<String>,
    /// IPAM handles released because no endpoint owns them.
    pub freed_handles: Vec<String>,
    /// Endpoints of live containers whose host interface is missing: (endpoint, interface).
    pub missing_interfaces: Vec<(String, String)>,
}

/// Whether the container behind `netns` is certainly gone: its namespace file is missing
/// from a directory that exists. A path felix cannot judge (empty, or in a directory it
/// does not see, such as another PID's `/proc` entry) counts as alive.
pub fn container_gone(netns: &str) -> bool {
    if netns.is_empty() {
        return false;
    }
    let path = Path::new(netns);
    let parent_seen = path.parent().is_some_and(Path::is_dir);
    parent_seen && !path.exists()
}

/// The IPAM handles a set of endpoints own.
fn owned_handles(endpoints: &[Endpoint]) -> BTreeSet<String> {
    endpoints.iter().map(|e| e.key.ipam_handle()).collect()
}

/// Whether an allocation handle has the shape felix's CNI gives (`<network>.<container>`),
/// so that an audit never releases what something else allocated.
fn cni_handle(handle: &str) -> bool {
    handle
        .split_once('.')
        .is_some_and(|(net, id)| !net.is_empty() && !id.is_empty())
}

/// The audit's parts: the same store, IPAM and dataplane the CNI service uses.
pub struct Audit {
    pub store: Arc<EndpointStore>,
    pub ipam: Arc<dyn Ipam>,
    pub pods: Arc<PodNetwork>,
    /// The CNI service's lock (see `CniService::dataplane_lock`).
    pub lock: Arc<RwLock<()>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl Audit {
    /// Reconciles allocations, endpoints and interfaces once.
    pub async fn run(&self) -> Result<AuditReport, String> {
        let _guard = self.lock.write().await;
        let mut report = AuditReport::default();
        let mut kept = Vec::new();
        for ep in self.store.all().await {
            if container_gone(&ep.netns) {
                let what = describe(&ep);
                self.pods
                    .unplumb(&ep.key.workload_id())
                    .await
                    .map_err(|e| format!("removing {what}'s interface: {e}"))?;
                self.ipam
                    .release(&ep.key.ipam_handle())
                    .await
                    .map_err(|e| format!("releasing {what}'s addresses: {e}"))?;
                self.store
                    .delete(&ep.key)
                    .await
                    .map_err(|e| format!("removing {what}: {e}"))?;
                report.removed_endpoints.push(what);
            } else {
                kept.push(ep);
            }
        }
        let owned = owned_handles(&kept);
        let handles = self
            .ipam
            .handles("")
            .await
            .map_err(|e| format!("listing this node's allocations: {e}"))?;
        for h in handles {
            if cni_handle(&h) && !owned.contains(&h) {
                self.ipam
                    .release(&h)
                    .await
                    .map_err(|e| format!("releasing allocation {h}: {e}"))?;
                report.freed_handles.push(h);
            }
        }
        let links = self
            .pods
            .link_names()
            .await
            .map_err(|e| format!("listing interfaces: {e}"))?;
        for ep in &kept {
            let ifname = if ep.host_ifname.is_empty() {
                host_veth_name(&ep.key.workload_id())
            } else {
                ep.host_ifname.clone()
            };
            if !links.contains(&ifname) {
                report.missing_interfaces.push((describe(ep), ifname));
            }
        }
        Ok(report)
    }
}

/// How an endpoint is named in logs: pod (or container) and interface.
pub fn describe(ep: &Endpoint) -> String {
    let who = if ep.pod_name.is_empty() {
        ep.key.container_id.clone()
    } else {
        format!("{}/{}", ep.pod_namespace, ep.pod_name)
    };
    format!("{who} {}", ep.key.ifname)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_gone_only_when_its_netns_file_is_missing_from_a_seen_directory() {
        let dir = tempfile::tempdir().unwrap();
        let alive = dir.path().join("alive");
        std::fs::write(&alive, "").unwrap();
        assert!(!container_gone(&alive.display().to_string()));
        assert!(container_gone(
            &dir.path().join("gone").display().to_string()
        ));
        assert!(!container_gone(""));
        assert!(!container_gone("/proc/999999999/ns/net"));
    }

    #[test]
    fn only_cni_shaped_handles_are_audited() {
        assert!(cni_handle("twill.abc123"));
        assert!(!cni_handle("ipip-tunnel-addr"));
        assert!(!cni_handle(".x"));
    }
}
