//! twill-felix as a library: the pod dataplane ([`dataplane`]), the CNI side of the agent
//! service ([`cni`]), the agent that wires them to the datastore, IPAM and the embedded
//! BGP speaker ([`agent`]), and the command line ([`config`]).

pub mod agent;
pub mod cni;
pub mod config;
pub mod dataplane;
pub mod logging;
pub mod policy;
