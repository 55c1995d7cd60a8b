//! Twill's `Node`: the per-node record felix registers (BGP addresses, AS override,
//! route-reflector cluster id); node labels live in its metadata.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AsNumber, ResourceStatus};

/// A node of the cluster as Twill sees it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "Node",
    plural = "nodes",
    shortname = "twnode",
    category = "twill",
    status = "ResourceStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "IPv4", type_ = "string", json_path = ".spec.bgp.ipv4Address"),
    printcolumn(name = "IPv6", type_ = "string", json_path = ".spec.bgp.ipv6Address"),
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.bgp.asNumber")
)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBGPSpec>,
}

/// A node's BGP identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBGPSpec {
    /// IPv4 address with prefix length (`192.0.2.10/24`) or bare address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    /// Overrides `BGPConfiguration.asNumber` for this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Makes the node a route reflector with this cluster id (an IPv4 address).
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}
