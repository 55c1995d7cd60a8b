//! `WorkloadEndpoint`: a pod's network interface as felix created it (namespaced).
//! In etcd mode the workload's labels live in this object's metadata.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pod's interface: where it lives, which addresses it has.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "WorkloadEndpoint",
    plural = "workloadendpoints",
    shortname = "wep",
    category = "twill",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "Pod", type_ = "string", json_path = ".spec.pod"),
    printcolumn(
        name = "Interface",
        type_ = "string",
        json_path = ".spec.interfaceName"
    ),
    printcolumn(name = "Networks", type_ = "string", json_path = ".spec.ipNetworks")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEndpointSpec {
    /// `k8s` or `lab`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestrator: Option<String>,
    /// Node the workload runs on.
    pub node: String,
    /// Pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Workload id (for non-pod workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Interface name inside the pod (`eth0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Container id of the sandbox.
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "Option::is_none"
    )]
    pub container_id: Option<String>,
    /// Host-side interface (`tw` + 11 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    /// MAC of the pod-side interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses as `/32` and `/128` networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    /// The IPAM handle the addresses are recorded under.
    #[serde(
        default,
        rename = "ipamHandleID",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipam_handle_id: Option<String>,
    /// Service account of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Named ports of the workload (a pod's `containerPort`s that have a name), which
    /// network policies may refer to by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// One named port of a workload (Calico's `WorkloadEndpointPort`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// The port's name (`http`), as policies write it.
    pub name: String,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The port number, 1-65535.
    pub port: u16,
}

fn default_protocol() -> String {
    "TCP".to_owned()
}
