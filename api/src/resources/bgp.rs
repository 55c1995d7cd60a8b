//! BGP kinds: `BGPConfiguration` (cluster defaults, one named `default`, optionally one per
//! node as `node.<name>`), `BGPPeer` (who a node peers with) and `BGPFilter` (import and
//! export rules). Calico v3 field names. `BFDProfile` lives in [`super::bfd`].

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{AsNumber, ResourceStatus};

/// Cluster-wide BGP settings.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    shortname = "bgpconfig",
    category = "twill",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.asNumber"),
    printcolumn(
        name = "Mesh",
        type_ = "boolean",
        json_path = ".spec.nodeToNodeMeshEnabled"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// Default AS of every node (64512 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Full iBGP mesh between nodes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// TCP port the nodes' speakers listen on (default 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Log level of the BGP speaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Service cluster IP ranges every node advertises; a Service of these ranges with
    /// `externalTrafficPolicy: Local` is also advertised as a /32 (/128) by the nodes that
    /// have a local endpoint of it.
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceCidr>,
    /// Service external IP ranges (`spec.externalIPs`), advertised as `serviceClusterIPs`.
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceCidr>,
    /// Service LoadBalancer IP ranges (`status.loadBalancer.ingress`), advertised as
    /// `serviceClusterIPs`.
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceCidr>,
    /// Named communities usable in `prefixAdvertisements`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    /// Communities attached to advertised prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    /// The `BFDProfile` of the node-to-node mesh sessions (no BFD when unset).
    #[serde(
        default,
        rename = "nodeMeshBFDProfile",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_mesh_bfd_profile: Option<String>,
}

/// A service range (`cidr`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceCidr {
    pub cidr: String,
}

/// A named community value (`aa:nn` standard or `aa:nn:mm` large).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Community {
    pub name: String,
    pub value: String,
}

/// Communities to attach to routes within a CIDR.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrefixAdvertisement {
    pub cidr: String,
    /// Community names (from `communities`) or literal values.
    #[serde(default)]
    pub communities: Vec<String>,
}

/// A BGP peering: which nodes (`node` or `nodeSelector`; neither = all) peer with whom
/// (`peerIP` + `asNumber`, or the nodes matched by `peerSelector`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "BGPPeer",
    plural = "bgppeers",
    category = "twill",
    status = "ResourceStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "PeerIP", type_ = "string", json_path = ".spec.peerIP"),
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.asNumber"),
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(
        name = "NodeSelector",
        type_ = "string",
        json_path = ".spec.nodeSelector",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// Only this node peers (exclusive with `nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The nodes that peer (exclusive with `node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// The peer's address, optionally `ip:port` (`[v6]:port` for IPv6).
    #[serde(default, rename = "peerIP", skip_serializing_if = "Option::is_none")]
    pub peer_ip: Option<String>,
    /// The peer's AS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Peer with the nodes this selects instead of `peerIP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<String>,
    /// Unnumbered peering instead of `peerIP`: peer over this interface's IPv6 link-local
    /// address with whichever router is on the other end of the link (its address is
    /// discovered); IPv4 and IPv6 routes both travel with IPv6 next hops (RFC 8950).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// TCP-MD5 password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeyRef>,
    /// `UseNodeIP` (default) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    /// Do not rewrite the next hop of routes sent to this peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    /// Graceful-restart time (a duration like `120s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    /// Names of `BGPFilter`s applied to this peering, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// The peer is a route-reflector client of the selected nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_reflector_client: Option<bool>,
    /// The `BFDProfile` of this peering (no BFD when unset). A name that does not
    /// resolve holds the peering until it does.
    #[serde(
        default,
        rename = "bfdProfile",
        skip_serializing_if = "Option::is_none"
    )]
    pub bfd_profile: Option<String>,
}

/// Where a password comes from: inline (`value`, etcd mode and the lab) or a Secret key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// A key of a Secret in the controller's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

/// Import/export rules for BGP peerings.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "BGPFilter",
    plural = "bgpfilters",
    category = "twill",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

/// One filter rule; the first rule that matches decides.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPFilterRule {
    /// Network the route must fall within.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// `Equal`, `NotEqual`, `In`, `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Equal", "NotEqual", "In", "NotIn"]))]
    pub match_operator: Option<String>,
    /// Prefix-length bounds for `In`/`NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<PrefixLength>,
    /// `Accept` or `Reject`.
    #[schemars(extend("enum" = ["Accept", "Reject"]))]
    pub action: String,
}

/// Prefix-length range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u8>,
}
