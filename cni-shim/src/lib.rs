//! The CNI plugin `twill` as a library: reads the request (environment and configuration,
//! checked with [`twill_cni`]'s spec types), forwards it to felix over the agent socket and
//! turns the reply into the CNI result or error object the runtime reads.

pub mod client;
pub mod run;
