//! `IPPool`: a range pods get addresses from, carved into per-node blocks.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ResourceStatus;

/// An address pool (Calico v3 `IPPool` fields).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "IPPool",
    plural = "ippools",
    shortname = "pool",
    category = "twill",
    status = "ResourceStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "BlockSize", type_ = "integer", json_path = ".spec.blockSize"),
    printcolumn(name = "NAT", type_ = "boolean", json_path = ".spec.natOutgoing"),
    printcolumn(name = "Disabled", type_ = "boolean", json_path = ".spec.disabled"),
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".spec.nodeSelector",
        priority = "1"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The pool's network, masked (`10.244.0.0/16`, `fd00:10:244::/48`).
    pub cidr: String,
    /// Prefix length of the blocks carved out of the pool: 20-32 for IPv4 (default 26),
    /// 116-128 for IPv6 (default 122).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    /// Masquerade traffic from the pool's pods to destinations outside every pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    /// Which nodes may take blocks from this pool (selector expression; default `all()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// No new allocations from a disabled pool; existing ones stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// What the pool's addresses are for (default `[Workload]`): `Workload` (pods) or
    /// `LoadBalancer` (Services of type LoadBalancer). A `LoadBalancer` pool serves nothing
    /// else: pods never get its addresses, and Services get addresses only from such pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_uses: Option<Vec<IPPoolUse>>,
}

/// One use of an `IPPool`'s addresses (Calico's `allowedUses` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IPPoolUse {
    /// Pod (workload endpoint) addresses.
    Workload,
    /// Addresses of Services of type LoadBalancer.
    LoadBalancer,
}

impl IPPoolSpec {
    /// Default block size for the pool's address family.
    pub fn effective_block_size(&self) -> u8 {
        self.block_size
            .unwrap_or(if self.cidr.contains(':') { 122 } else { 26 })
    }

    /// Whether the pool's addresses may go to `usage` (no `allowedUses`: `Workload` only).
    pub fn allows(&self, usage: IPPoolUse) -> bool {
        match &self.allowed_uses {
            None => usage == IPPoolUse::Workload,
            Some(uses) => uses.contains(&usage),
        }
    }
}
