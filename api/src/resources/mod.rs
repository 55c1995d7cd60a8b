//! The resource types of group `networking.twill.dev`, version `v1`, one file per area,
//! and the registry of every kind the datastore stores (Twill's CRDs plus the native
//! Kubernetes kinds Twill reads).

// kube's `printcolumn(name = .., type_ = ..)` attributes repeat keys, which clippy's
// `duplicated_attributes` mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod bfd;
#[allow(clippy::duplicated_attributes)]
pub mod bgp;
pub mod common;
#[allow(clippy::duplicated_attributes)]
pub mod felix;
#[allow(clippy::duplicated_attributes)]
pub mod ipam;
#[allow(clippy::duplicated_attributes)]
pub mod ippool;
pub mod kinds;
#[allow(clippy::duplicated_attributes)]
pub mod node;
#[allow(clippy::duplicated_attributes)]
pub mod policy;
pub mod unknown;
#[allow(clippy::duplicated_attributes)]
pub mod workload;

pub use bfd::{BFDProfile, BFDProfileSpec};
pub use bgp::{
    BGPConfiguration, BGPConfigurationSpec, BGPFilter, BGPFilterRule, BGPFilterSpec, BGPPeer,
    BGPPeerSpec,
};
pub use common::{AsNumber, Condition, ResourceStatus};
pub use felix::{FelixConfiguration, FelixConfigurationSpec};
pub use ipam::{
    AffinityState, AllocationAttribute, BlockAffinity, BlockAffinitySpec, IPAMBlock, IPAMBlockSpec,
    IPAMConfig, IPAMConfigSpec, IPAMHandle, IPAMHandleSpec, IPReservation, IPReservationSpec,
};
pub use ippool::{IPPool, IPPoolSpec, IPPoolUse};
pub use kinds::{KindInfo, Resource};
pub use node::{Node, NodeBGPSpec, NodeSpec};
pub use policy::{GlobalNetworkPolicy, GlobalNetworkPolicySpec};
pub use workload::{EndpointPort, WorkloadEndpoint, WorkloadEndpointSpec};

/// Kubernetes' own kinds, as stored in etcd mode and read natively in Kubernetes mode.
pub mod native {
    pub use k8s_openapi::api::core::v1::{Namespace, Node as KubeNode, Pod, Service};
    pub use k8s_openapi::api::discovery::v1::EndpointSlice;
    pub use k8s_openapi::api::networking::v1::NetworkPolicy;
}

/// API group of every Twill kind.
pub const GROUP: &str = "networking.twill.dev";
/// API version of every Twill kind.
pub const VERSION: &str = "v1";
/// `apiVersion` of every Twill kind.
pub const API_VERSION: &str = "networking.twill.dev/v1";
