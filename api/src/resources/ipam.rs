//! The IPAM kinds, shaped like Calico's: `IPAMBlock` (one block's allocation state),
//! `BlockAffinity` (which node owns a block), `IPAMHandle` (what one workload holds),
//! `IPAMConfig` (cluster-wide knobs) and `IPReservation` (addresses never handed out).
//!
//! Plain data only: the allocation algorithms live in `twill-ipam`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One block of a pool and the state of each of its addresses.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    category = "twill",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "Affinity", type_ = "string", json_path = ".spec.affinity")
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMBlockSpec {
    /// The block's network (`10.244.3.64/26`).
    pub cidr: String,
    /// `host:<node>` when the block is affine to a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Whether the block was claimed while strict affinity was on (no borrowing from it).
    #[serde(default)]
    pub strict_affinity: bool,
    /// Per address ordinal: index into `attributes` of its holder, or null when free.
    #[serde(default)]
    pub allocations: Vec<Option<u32>>,
    /// Free ordinals in reuse order: the front has been free the longest.
    #[serde(default)]
    pub unallocated: Vec<u32>,
    /// Holders of addresses: handle and attributes (namespace, pod, node).
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    /// Bumped on every allocation; recorded per ordinal so a stale release is detectable.
    #[serde(default)]
    pub sequence_number: u64,
    /// Ordinal (as a string key) → the sequence number at which it was allocated.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    /// Free ordinal (as a string key) → Unix seconds of its last release.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub released_at: BTreeMap<String, u64>,
    /// Set while the block is being released, so no one allocates from it meanwhile.
    #[serde(default)]
    pub deleted: bool,
}

/// Who holds an address of a block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AllocationAttribute {
    /// The handle the allocation is recorded under (`<network>.<containerID>`).
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Free-form attributes: `namespace`, `pod`, `node`, `timestamp`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secondary: BTreeMap<String, String>,
}

/// States of a block claim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    /// The claim is being made; the block may not exist yet.
    #[default]
    Pending,
    /// The node owns the block.
    Confirmed,
    /// The block is being released.
    PendingDeletion,
}

/// A node's claim on a block.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "BlockAffinity",
    plural = "blockaffinities",
    category = "twill",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.node"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidr"),
    printcolumn(name = "State", type_ = "string", json_path = ".spec.state")
)]
#[serde(rename_all = "camelCase")]
pub struct BlockAffinitySpec {
    pub state: AffinityState,
    pub node: String,
    pub cidr: String,
    #[serde(default)]
    pub deleted: bool,
}

/// Everything one workload (container) holds, block by block.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "IPAMHandle",
    plural = "ipamhandles",
    category = "twill",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Handle", type_ = "string", json_path = ".spec.handleID")
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMHandleSpec {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR → number of addresses held in it.
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    #[serde(default)]
    pub deleted: bool,
}

/// Cluster-wide IPAM settings (one object, named `default`).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "IPAMConfig",
    plural = "ipamconfigs",
    category = "twill",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct IPAMConfigSpec {
    /// When true, never borrow addresses from another node's block.
    #[serde(default)]
    pub strict_affinity: bool,
    /// When true (the default), nodes claim blocks on demand.
    #[serde(default = "default_true")]
    pub auto_allocate_blocks: bool,
    /// Cap on blocks per node; 0 means no limit.
    #[serde(default)]
    pub max_blocks_per_host: u32,
}

fn default_true() -> bool {
    true
}

/// Addresses IPAM never hands out.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "networking.twill.dev",
    version = "v1",
    kind = "IPReservation",
    plural = "ipreservations",
    category = "twill",
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct IPReservationSpec {
    /// Addresses or networks (`10.244.0.1`, `10.244.0.0/30`).
    #[serde(default, rename = "reservedCIDRs")]
    pub reserved_cidrs: Vec<String>,
}
