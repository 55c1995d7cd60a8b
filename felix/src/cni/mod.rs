//! The felix side of the CNI: the request flow ([`service`]), the gRPC server on the agent
//! socket ([`server`]), the traits IPAM and the endpoint store plug into ([`traits`]), and
//! in-memory doubles of them ([`memory`]).

pub mod memory;
pub mod server;
pub mod service;
pub mod traits;

/// The CNI_ARGS key that carries a workload's labels when no orchestrator API holds them
/// (etcd mode, the lab): `TWILL_POD_LABELS=app=web,tier=front`.
pub const LABELS_ARG: &str = "TWILL_POD_LABELS";

pub use server::{AgentService, bind, serve};
pub use service::CniService;
pub use traits::{AllocateRequest, Endpoint, EndpointKey, Endpoints, Ipam, IpamError, StoreError};
