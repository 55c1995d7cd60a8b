//! The CNI spec as Twill speaks it: the spec's vocabulary (versions, commands, error codes),
//! the environment and configuration checks, the result shapes, and the request type with
//! its protobuf form for the agent socket.
//!
//! Both sides of the agent socket use this crate — the plugin `twill` (crate
//! `twill-cni-plugin`) and felix — so that they agree on validation and result JSON.
//! Nothing here does I/O.

pub mod config;
pub mod env;
pub mod request;
pub mod result;
pub mod spec;
