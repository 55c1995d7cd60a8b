//! The Helm chart (`charts/twill`), rendered by the real `helm` (from `scripts/helm.sh`):
//! `helm lint`, and `helm template` with the default values and the `ci/` combinations,
//! every rendered object parsed as its Kubernetes type, and the node DaemonSet, the
//! ipam-controller, RBAC, the conflist, the CRDs, the custom resources from values and the
//! values schema checked against what docs/ARCHITECTURE.md asks for.
//!
//! Without helm these tests fail; they never skip.

// Test code: a failed expectation is a failed test (clippy's test allowance covers only
// `#[test]` bodies, not the helpers of an integration-test crate).
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "chart/support.rs"]
mod support;

#[path = "chart/contract.rs"]
mod contract;
#[path = "chart/image.rs"]
mod image;
#[path = "chart/ipam_controller.rs"]
mod ipam_controller;
#[path = "chart/node.rs"]
mod node;
#[path = "chart/objects.rs"]
mod objects;
#[path = "chart/rbac.rs"]
mod rbac;
#[path = "chart/resources.rs"]
mod resources;
#[path = "chart/values.rs"]
mod values;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount, VolumeMount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use support::{NAMESPACE, Objects, Render, ci_values, round_trips_as, run_helm, values_file};

const GROUP: &str = "networking.twill.dev";
const NODE: &str = "twill-node";
const IPAM: &str = "twill-ipam-controller";

/// Twill's CRDs (docs/ARCHITECTURE.md "Datastore"), by plural, and whether each
/// is namespaced.
const CRDS: &[(&str, &str, bool)] = &[
    ("IPPool", "ippools", false),
    ("IPAMBlock", "ipamblocks", false),
    ("BlockAffinity", "blockaffinities", false),
    ("IPAMHandle", "ipamhandles", false),
    ("IPAMConfig", "ipamconfigs", false),
    ("IPReservation", "ipreservations", false),
    ("BGPConfiguration", "bgpconfigurations", false),
    ("BGPPeer", "bgppeers", false),
    ("BGPFilter", "bgpfilters", false),
    ("BFDProfile", "bfdprofiles", false),
    ("Node", "nodes", false),
    ("WorkloadEndpoint", "workloadendpoints", true),
    ("GlobalNetworkPolicy", "globalnetworkpolicies", false),
    ("FelixConfiguration", "felixconfigurations", false),
];

fn defaults() -> Render {
    Render::default()
}

fn full() -> Render {
    Render::default().with_values(ci_values("full-values.yaml"))
}

fn minimal() -> Render {
    Render::default().with_values(ci_values("minimal-values.yaml"))
}

fn pod_spec_of_daemonset(objects: &Objects) -> PodSpec {
    let ds: DaemonSet = objects.typed("DaemonSet", NODE);
    ds.spec.template.spec.expect("pod spec")
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn env_field_ref(c: &Container, name: &str) -> Option<String> {
    let var = c.env.iter().flatten().find(|e| e.name == name)?;
    Some(
        var.value_from
            .as_ref()?
            .field_ref
            .as_ref()?
            .field_path
            .clone(),
    )
}

/// The mount of `container` at `mount_path`, and the host path of the volume behind it.
fn host_mount<'a>(pod: &PodSpec, c: &'a Container, mount_path: &str) -> (&'a VolumeMount, String) {
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == mount_path)
        .unwrap_or_else(|| panic!("{} mounts nothing at {mount_path}", c.name));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .unwrap_or_else(|| panic!("no volume {}", mount.name));
    let host = volume
        .host_path
        .as_ref()
        .unwrap_or_else(|| panic!("volume {} is not a hostPath", volume.name));
    (mount, host.path.clone())
}

fn port_number(port: &IntOrString) -> i32 {
    match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => panic!("probe port {s:?} is a name, not a number"),
    }
}

/// The conflist as installed: the ConfigMap data under the name the init container copies.
fn conflist(objects: &Objects) -> (String, Value) {
    let cm: ConfigMap = objects.typed("ConfigMap", "twill-cni-config");
    let data = cm.data.expect("ConfigMap data");
    assert_eq!(data.len(), 1, "one conflist, found {:?}", data.keys());
    let (name, text) = data.into_iter().next().expect("one entry");
    let pod = pod_spec_of_daemonset(objects);
    let install = container(
        pod.init_containers.as_deref().unwrap_or_default(),
        "install-cni",
    );
    assert_eq!(
        env(install, "CNI_CONF_NAME").as_deref(),
        Some(name.as_str()),
        "the init container installs this file"
    );
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("conflist is not JSON: {e}\n{text}"));
    (name, json)
}
