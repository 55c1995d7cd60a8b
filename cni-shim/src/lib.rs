//! The CNI plugin `twill` as a library: the spec's vocabulary, the environment and
//! configuration checks, the result shapes, the request type and its protobuf form, and
//! the client that forwards a request to felix.
//!
//! felix reuses the same types (validation, result JSON) so that both sides of the agent
//! socket agree. Nothing here talks to a datastore or touches the network stack.

pub mod client;
pub mod config;
pub mod env;
pub mod request;
pub mod result;
pub mod run;
pub mod spec;
