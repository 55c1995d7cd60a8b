//! twill-felix as a library: the pod dataplane and the CNI side of the agent service.
//! The binary `twill-felix` wires these to the datastore, IPAM and bgpd.

pub mod cni;
pub mod dataplane;
pub mod policy;
