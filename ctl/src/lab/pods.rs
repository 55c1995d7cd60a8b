//! `lab pod add|del`: a pod namespace plus a CNI ADD (or DEL) through the node's
//! configuration list, recorded in the lab's state. A pod's Kubernetes namespace is
//! created in the datastore when missing (policy selects on it).

use std::path::Path;

use serde_json::Value;

use super::cni::{self, Attachment};
use super::state::{PodState, update};
use super::{Lab, LabError, PodSpec, check_name, sys};

fn read_conflist(path: &Path) -> Result<Value, LabError> {
    let text = std::fs::read_to_string(path).map_err(|e| LabError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| LabError::State(format!("{}: {e}", path.display())))
}

impl Lab {
    /// Adds a pod on node `spec.node` and returns its record (with its addresses).
    pub async fn add_pod(&self, spec: &PodSpec) -> Result<PodState, LabError> {
        check_name("pod name", &spec.name)?;
        let namespace = if spec.namespace.is_empty() {
            "default"
        } else {
            spec.namespace.as_str()
        };
        check_name("namespace", namespace)?;
        let st = self.state()?;
        let node = st.nodes.get(spec.node.wrapping_sub(1)).ok_or_else(|| {
            LabError::Usage(format!(
                "--node {}: the lab has nodes 1..={}",
                spec.node,
                st.nodes.len()
            ))
        })?;
        let netns = format!("{}-{}", self.name, spec.name);
        // Claim the name in the record first, so two concurrent adds cannot both take it.
        let claimed = update(&self.name, |s| {
            if s.pod(&spec.name).is_some() || s.namespaces.contains(&netns) {
                false
            } else {
                s.namespaces.push(netns.clone());
                true
            }
        })?;
        if !claimed {
            return Err(LabError::Usage(format!(
                "pod {:?} already exists in lab {}",
                spec.name, self.name
            )));
        }
        let result = self
            .plumb(spec, namespace, node, &st.cni_bin_dir, &netns)
            .await;
        match result {
            Ok(pod) => {
                update(&self.name, |s| s.pods.push(pod.clone()))?;
                Ok(pod)
            }
            Err(e) => {
                let _ = sys::netns_del(&netns);
                let _ = update(&self.name, |s| s.namespaces.retain(|n| n != &netns));
                Err(e)
            }
        }
    }

    async fn plumb(
        &self,
        spec: &PodSpec,
        namespace: &str,
        node: &super::NodeState,
        cni_bin: &Path,
        netns: &str,
    ) -> Result<PodState, LabError> {
        let ds = self.datastore().await?;
        super::up::ensure_namespace(&ds, namespace).await?;
        sys::netns_add(netns)?;
        let container_id = format!("{}-{}", self.name, spec.name);
        let netns_path = format!("/var/run/netns/{netns}");
        let list = read_conflist(&node.conflist)?;
        let attachment = Attachment {
            container_id: &container_id,
            netns_path: &netns_path,
            ifname: "eth0",
            namespace,
            pod: &spec.name,
            labels: &spec.labels,
            ports: &spec.ports,
        };
        let result = cni::add(&node.netns, cni_bin, &list, &attachment).await?;
        Ok(PodState {
            name: spec.name.clone(),
            namespace: namespace.to_string(),
            node: spec.node - 1,
            netns: netns.to_string(),
            container_id,
            ips: cni::result_ips(&result),
            labels: spec.labels.clone(),
            ports: spec
                .ports
                .iter()
                .map(|p| (p.host_port, p.container_port, p.protocol.clone()))
                .collect(),
            result,
        })
    }

    /// Deletes a pod: CNI DEL through the list, then its namespace.
    pub async fn del_pod(&self, name: &str) -> Result<(), LabError> {
        let st = self.state()?;
        let pod = st
            .pod(name)
            .ok_or_else(|| LabError::Usage(format!("no pod {name:?} in lab {}", self.name)))?
            .clone();
        let node = &st.nodes[pod.node];
        let list = read_conflist(&node.conflist)?;
        let netns_path = format!("/var/run/netns/{}", pod.netns);
        let ports: Vec<cni::PortMapping> = pod
            .ports
            .iter()
            .map(|(h, c, p)| cni::PortMapping {
                host_port: *h,
                container_port: *c,
                protocol: p.clone(),
            })
            .collect();
        let attachment = Attachment {
            container_id: &pod.container_id,
            netns_path: &netns_path,
            ifname: "eth0",
            namespace: &pod.namespace,
            pod: &pod.name,
            labels: &pod.labels,
            ports: &ports,
        };
        cni::del(
            &node.netns,
            &st.cni_bin_dir,
            &list,
            &attachment,
            Some(&pod.result),
        )
        .await?;
        sys::netns_del(&pod.netns)?;
        update(&self.name, |s| {
            s.pods.retain(|p| p.name != name);
            s.namespaces.retain(|n| n != &pod.netns);
        })
    }
}
