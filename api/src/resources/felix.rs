//! `FelixConfiguration`: node-agent settings, `default` for all nodes or `node.<name>`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the node agent (Calico v3 names where they exist).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "FelixConfiguration",
    plural = "felixconfigurations",
    shortname = "felixconfig",
    category = "twill",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct FelixConfigurationSpec {
    /// `Debug`, `Info`, `Warning`, `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Period of the full dataplane resync (duration, e.g. `90s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_refresh_interval: Option<String>,
    /// `nftables` (default) or `iptables`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<String>,
    /// Prefix of host-side pod interfaces (`tw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_prefix: Option<String>,
    /// `Drop`, `Accept` or `Return` for traffic from pods to their host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_endpoint_to_host_action: Option<String>,
    #[serde(
        default,
        rename = "ipv6Support",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_support: Option<bool>,
    /// Pod interface MTU (0 = detect from the uplink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_port: Option<u16>,
    /// Route protocol number for routes felix installs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_protocol: Option<u8>,
    /// Host ports pods may always reach when `defaultEndpointToHostAction` is `Drop`
    /// (never TCP 179).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe_inbound_host_ports: Option<Vec<ProtoPort>>,
}

/// A protocol (`TCP`, `UDP`, `SCTP`) and port.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProtoPort {
    pub protocol: String,
    pub port: u16,
}
